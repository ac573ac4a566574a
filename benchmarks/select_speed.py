"""The selector's speed: command start to a verified ONNX file, and the exported model's latency.

Run: `MEDNNS_DATA_DIR=../shared/medmnist python -m benchmarks.select_speed [--dataset pneumoniamnist]`
after `dvc repro` (it needs models/metaspace and models/supernets).

- time from `mednns select DATASET --finetune-epochs 0 --export ... --no-register` starting to the
  ONNX file being written (the whole command, interpreter start-up included): target <= 10 s for a
  ~5,000-image dataset (PneumoniaMNIST: 5,856 images); the same with `--zoo-only` beside it, the cost of
  the default ImageNet candidate as a ratio;
- latency of the exported model at batch 1 and 64 in onnxruntime against PyTorch eager running the
  same graph (`RawImageModel`: preprocessing + network), interleaved: target onnxruntime no slower.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import print_table, time_interleaved
from mednns.data import load_dataset
from mednns.selector.export import RawImageModel, onnx_session, npz_layout
from mednns.selector.finetune import FinetuneConfig
from mednns.zoo import SubnetStore
from mednns.metaspace import MetaSpace
from mednns.selector.selection import SelectConfig, select


def command_seconds(dataset: str, out: Path, *options: str) -> float:
    exe = Path(sys.executable).with_name("mednns")
    t0 = time.perf_counter()
    subprocess.run([str(exe), "--log-level", "WARNING", "select", dataset, "--finetune-epochs", "0",
                    "--export", str(out), "--no-register", *options], check=True, capture_output=True, text=True)
    assert out.is_file()
    return time.perf_counter() - t0


def latency_rows(dataset: str, onnx_path: Path) -> list[dict]:
    ds = load_dataset(dataset, download=False)
    sel = select(ds, MetaSpace.load("models/metaspace"), SubnetStore("models/supernets", networks="models/pretrained"),
                 finetune=FinetuneConfig(epochs=0), pretrained=SelectConfig().pretrained,
                 pretrained_size=SelectConfig().pretrained_size)
    eager = RawImageModel(sel.net.eval(), sel.net.cfg.in_channels, sel.net.cfg.image_size,
                          source_size=ds.spec.image_size).eval()  # the graph the export holds
    session = onnx_session(onnx_path)
    images = npz_layout(ds.images("test"))
    rows = []
    for batch in (1, 64):
        x = np.ascontiguousarray(images[:batch])
        xt = torch.as_tensor(x)

        def run_torch():
            with torch.inference_mode():
                eager(xt)

        t = time_interleaved({"onnxruntime": lambda: session.run(None, {"images": x}), "pytorch eager": run_torch},
                             rounds=30 if batch == 1 else 10)
        for name, s in t.items():
            rows.append({"batch": batch, "runtime": name, "ms": 1000 * s, "images/s": batch / s,
                         "vs pytorch eager": s / t["pytorch eager"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="pneumoniamnist")
    args = parser.parse_args()
    os.environ.setdefault("MEDNNS_LOG_LEVEL", "WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.onnx"
        zoo_only = command_seconds(args.dataset, Path(tmp) / "zoo.onnx", "--zoo-only")
        seconds = command_seconds(args.dataset, out)
        rows = latency_rows(args.dataset, out)
    print_table(f"`mednns select {args.dataset} --finetune-epochs 0 --export model.onnx`",
                [{"step": "command start to verified ONNX file", "seconds": seconds, "target": "<= 10 s",
                  "vs --zoo-only": seconds / zoo_only},
                 {"step": "the same, --zoo-only", "seconds": zoo_only, "target": "", "vs --zoo-only": 1.0}])
    print_table(f"Exported model latency, CPU ({torch.get_num_threads()} threads)", rows)


if __name__ == "__main__":
    main()
