"""Every benchmark, one after the other (never two at once: they would share the 2 cores), each printing
its markdown table. Run: `MEDNNS_DATA_DIR=../shared/medmnist python -m benchmarks.run_all` (or `make bench`)
after `dvc repro`, since the zoo and selector benchmarks use the demo's artefacts."""

from __future__ import annotations

import subprocess
import sys
import time

BENCHMARKS = ("supernet_step", "zoo_scoring", "registry_register", "select_speed", "imagenet_probe",
              "scale_out")


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        print(f"\n## benchmarks.{name}", flush=True)
        t0 = time.time()
        if subprocess.run([sys.executable, "-m", f"benchmarks.{name}"]).returncode:
            failed.append(name)
        print(f"\n({name}: {time.time() - t0:.0f} s)", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
