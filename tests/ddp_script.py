"""Run by tests/test_scale_out.py under torchrun: train the tiny supernet data-parallel.

Usage: torchrun --nproc-per-node N tests/ddp_script.py OUT.pt EPOCHS [STOP_AFTER_EPOCH]
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import tiny_config, tiny_dataset  # noqa: E402
from mednns.train import distributed  # noqa: E402
from mednns.train.supernet import SupernetTrainer  # noqa: E402


def main() -> None:
    out, epochs = Path(sys.argv[1]), int(sys.argv[2])
    stop = int(sys.argv[3]) if len(sys.argv) > 3 else None

    def on_epoch(epoch, metrics):
        if stop is not None and epoch + 1 == stop:
            raise SystemExit(3)  # killed mid-run: the resume state of `stop` epochs is on disk

    with distributed.process_group("cpu") as ranks:
        summary = SupernetTrainer(tiny_dataset(), tiny_config(epochs=epochs, nproc=ranks.world)).fit(out, on_epoch)
        if ranks.main:
            out.with_suffix(".json").write_text(json.dumps({"world": ranks.world, **summary["final"],
                                                            "resumed_from_epoch": summary["resumed_from_epoch"]}))


if __name__ == "__main__":
    main()
