"""Speed measurements. Each module's `run()` returns table rows; every figure is compared with a
baseline measured in the same run, because this machine's absolute speed is noisy."""
