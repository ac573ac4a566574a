"""The GPU path, with the library alone: supernet training with mixed precision at 28 and 64 px, then a
small zoo, on PneumoniaMNIST. Prints images/s and subnets/s (a markdown table for the README).

Run on the GPU machine: `benchmarks/gpu_check.sh DATA_DIR` (see there). It needs torch (CUDA), numpy,
pandas, pyarrow, scipy, scikit-learn and tqdm, and none of medmnist, mlflow, dvc or ray: the dataset is
read as a plain npz. `--device cpu --quick` runs the same steps at toy sizes (a check of the script).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import platform
import sys
import tempfile
import time
from pathlib import Path

NEEDED = ("torch", "numpy", "pandas", "pyarrow", "scipy", "sklearn", "tqdm")
ABSENT_OK = ("medmnist", "mlflow", "dvc", "ray")


def _check_imports() -> None:
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        sys.exit(f"error: missing Python packages: {', '.join(missing)} (pip install them; torch with CUDA)")


def load(data: Path, size: int):
    """PneumoniaMNIST at `size` px: its own file when the folder has it, else the 28 px images resized."""
    import torch
    import torch.nn.functional as F

    from mednns.data.npz import build_dataset, read_arrays

    own = data / ("pneumoniamnist.npz" if size == 28 else f"pneumoniamnist_{size}.npz")
    path = own if own.is_file() else data / "pneumoniamnist.npz"
    if not path.is_file():
        sys.exit(f"error: {path} not found; copy PneumoniaMNIST's npz into {data}")
    arrays = read_arrays(path)
    note = path.name
    if int(arrays["train_images"].shape[1]) != size:
        for key in [k for k in arrays if k.endswith("_images")]:
            x = torch.from_numpy(arrays[key]).float().unsqueeze(1)
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            arrays[key] = x.squeeze(1).round().clamp(0, 255).to(torch.uint8).numpy()
        note = f"{path.name} resized to {size} px"
    ds = build_dataset(arrays, str(path), "pneumoniamnist", note, task="binary-class", num_classes=2, channels=1)
    return ds, note


def train(ds, device: str, epochs: int, batch: int, quick: bool, out: Path) -> dict:
    from mednns.train.supernet import SupernetConfig, SupernetTrainer

    cfg = SupernetConfig(device=device, amp=True, epochs=epochs, warmup_epochs=1, batch_size=batch,
                         max_train_per_epoch=256 if quick else 0, recalib_images=128 if quick else 2000,
                         eval_batch_size=1024)
    t0 = time.perf_counter()
    summary = SupernetTrainer(ds, cfg).fit(out)
    h = summary["history"]
    return {"images/s largest only": h[0]["train_images_per_s"],
            "images/s sandwich": max(e["train_images_per_s"] for e in h[1:]) if len(h) > 1 else float("nan"),
            "test acc largest": summary["final"]["test_acc_largest"],
            "test acc smallest": summary["final"]["test_acc_smallest"], "wall s": time.perf_counter() - t0,
            "amp": summary["amp"]}


def profile(ds, device: str, batch: int, steps: int) -> None:
    """Where a sandwich step's time goes, after one epoch of as many steps: the torch profiler's top operators
    by host and by device time (on an H200, a convolution whose shape cuDNN has not met yet costs about 1 ms
    of host time against 15-60 us on the GPU, and the sandwich rule meets new shapes for several epochs)."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    from mednns.train.supernet import SupernetConfig, SupernetTrainer

    trainer = SupernetTrainer(ds, SupernetConfig(device=device, amp=True, epochs=2, warmup_epochs=0,
                                                 batch_size=batch, max_train_per_epoch=batch * steps))
    trainer._train_epoch(0)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    t0 = time.perf_counter()
    with torch_profile(activities=acts) as prof:
        trainer._train_epoch(1)
    print(f"\n### Profile: {steps} sandwich steps of batch {batch} in {time.perf_counter() - t0:.2f} s")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    if device.startswith("cuda"):
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=10))


def cudnn_curve(ds, device: str, batch: int, steps: int, epochs: int, benchmark: bool) -> list[dict]:
    """Images/s of each sandwich epoch of `steps` steps from a cold start, with cudnn.benchmark as given: with
    it on, each new convolution shape pays for its benchmark once, so the rate climbs as the cache fills
    (run each setting in its own process so that neither inherits the other's caches)."""
    import torch

    from mednns.train.supernet import SupernetConfig, SupernetTrainer

    cfg = SupernetConfig(device=device, amp=True, epochs=epochs, warmup_epochs=0, batch_size=batch,
                         max_train_per_epoch=batch * steps)
    trainer = SupernetTrainer(ds, cfg)
    torch.backends.cudnn.benchmark = benchmark
    rows, total = [], 0.0
    for epoch in range(epochs):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        trainer._train_epoch(epoch)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        total += seconds
        rows.append({"cudnn.benchmark": benchmark, "epoch": epoch + 1, "steps so far": steps * (epoch + 1),
                     "images/s": batch * steps / seconds, "seconds so far": total})
        print(rows[-1], flush=True)
    return rows


def zoo(ds, ckpt: Path, device: str, subnets: int, quick: bool, out: Path) -> dict:
    from mednns.zoo import ZooConfig, build_zoo

    cfg = ZooConfig(device=device, num_archs=subnets, transfer_per_dataset=0, recalib_images=128 if quick else 2000,
                    recalib_batch=256, eval_batch=1024, max_eval_images=0, shard_size=max(1, subnets // 5))
    t0 = time.perf_counter()
    table = build_zoo(ckpt, ds, [], out, cfg)
    seconds = time.perf_counter() - t0
    return {"subnets": len(table), "seconds": seconds, "subnets/s": len(table) / seconds,
            "val acc min / median / max": f"{table.val_acc.min():.3f} / {table.val_acc.median():.3f} / "
                                          f"{table.val_acc.max():.3f}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="folder with pneumoniamnist.npz")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--subnets", type=int, default=50)
    parser.add_argument("--profile-steps", type=int, default=10, help="sandwich steps to profile (0: none)")
    parser.add_argument("--cudnn-curve", choices=("on", "off"),
                        help="only time each sandwich epoch (--profile-steps steps) from a cold start, "
                             "cudnn.benchmark on or off, --epochs epochs")
    parser.add_argument("--quick", action="store_true", help="toy sizes: a check of the script itself")
    args = parser.parse_args()
    _check_imports()
    import torch

    from benchmarks.common import print_table

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("error: no CUDA device visible to torch (run on the GPU machine, or pass --device cpu --quick)")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"# GPU check {datetime.date.today()}: {name}, torch {torch.__version__}, python {platform.python_version()}")
    at28 = load(args.data, 28)
    if args.cudnn_curve:
        print_table(f"Sandwich epochs of {args.profile_steps} steps, batch {args.batch}, from a cold start",
                    cudnn_curve(at28[0], args.device, args.batch, args.profile_steps, args.epochs,
                                args.cudnn_curve == "on"))
        return
    if args.profile_steps:
        profile(at28[0], args.device, args.batch, 2 if args.quick else args.profile_steps)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for size in (28, 64):
            ds, note = at28 if size == 28 else load(args.data, size)
            r = train(ds, args.device, 1 if args.quick else args.epochs, args.batch, args.quick, work / f"s{size}.pt")
            rows.append({"px": size, "data": note, **r})
            print(f"trained at {size} px: {r}", flush=True)
        z = zoo(at28[0], work / "s28.pt", args.device, 4 if args.quick else args.subnets, args.quick,
                work / "zoo" / "p.parquet")
    print_table(f"Supernet training, mixed precision, batch {args.batch}, {args.device}", rows)
    print_table("Zoo build at 28 px (own val/test, all images; BN recalibration on 2,000)", [z])
    loaded = [m for m in ABSENT_OK if m in sys.modules]
    assert not loaded, f"the GPU path imported {loaded}"
    print("\nimported none of: " + ", ".join(ABSENT_OK))


if __name__ == "__main__":
    main()
