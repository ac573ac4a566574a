"""Stage `build_zoo@<dataset>`: sample, recalibrate and score subnets of one supernet."""

import argparse
import time

from mednns.data import load_prepared
from mednns.io import atomic_path, write_json
from mednns.zoo import ZooConfig, build_zoo
from pipelines.stage import params, run


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="build_zoo")
    parser.add_argument("dataset")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: params zoo.device)")
    args = parser.parse_args(argv)
    p = params("zoo")
    cfg = ZooConfig.from_params(p)
    source = load_prepared(f"data/prepared/{args.dataset}")
    targets = [load_prepared(f"data/prepared/{name}") for name in params("datasets") if name != args.dataset]
    t0 = time.time()
    table = build_zoo(f"models/supernets/{args.dataset}.pt", source, targets, f"zoo/{args.dataset}.parquet",
                      cfg, device=args.device or p.get("device", "cpu"))
    own = table[table.target_dataset == args.dataset]
    write_json(f"metrics/zoo/{args.dataset}.json", {
        "archs": int(own.arch_id.nunique()), "rows": int(len(table)), "seconds": round(time.time() - t0, 1),
        "val_acc_min": float(own.val_acc.min()), "val_acc_median": float(own.val_acc.median()),
        "val_acc_max": float(own.val_acc.max()), "transfer_rows": int((table.target_dataset != args.dataset).sum()),
    })
    with atomic_path(f"plots/zoo/{args.dataset}.csv") as tmp:  # score spread: a DVC scatter plot
        own[["arch_id", "params", "macs", "latency_ms", "val_acc", "test_acc"]].to_csv(tmp, index=False)


if __name__ == "__main__":
    run(main)
