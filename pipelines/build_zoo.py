"""Stage `build_zoo@<dataset>`: sample, recalibrate and score subnets of one supernet."""

import argparse
import time
from dataclasses import replace
from pathlib import Path

from mednns.data import load_prepared
from mednns.utils.io import atomic_path, write_json
from mednns.zoo import ZooConfig, build_zoo
from pipelines.stage import config, datasets, run


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="build_zoo")
    parser.add_argument("dataset")
    parser.add_argument("--supernet", required=True, help="its supernet checkpoint")
    parser.add_argument("--data", required=True, help="folder of prepared datasets (source and targets)")
    parser.add_argument("--out", required=True, help="zoo table (.parquet); its BatchNorm statistics go beside it")
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--plot", required=True, help="score spread (.csv, a DVC plot)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: params zoo.device)")
    args = parser.parse_args(argv)
    cfg = config("zoo", ZooConfig)
    cfg = replace(cfg, device=args.device or cfg.device)
    data = Path(args.data)
    source = load_prepared(data / args.dataset)
    targets = [load_prepared(data / name) for name in datasets() if name != args.dataset]
    t0 = time.time()
    table = build_zoo(args.supernet, source, targets, args.out, cfg)
    own = table[table.target_dataset == args.dataset]
    write_json(args.metrics, {
        "archs": int(own.arch_id.nunique()), "rows": int(len(table)), "seconds": round(time.time() - t0, 1),
        "val_acc_min": float(own.val_acc.min()), "val_acc_median": float(own.val_acc.median()),
        "val_acc_max": float(own.val_acc.max()), "transfer_rows": int((table.target_dataset != args.dataset).sum()),
    })
    with atomic_path(args.plot) as tmp:
        own[["arch_id", "params", "macs", "latency_ms", "val_acc", "test_acc"]].to_csv(tmp, index=False)


if __name__ == "__main__":
    run(main)
