"""Stage `train_supernet@<dataset>`: train one supernet, tracked in MLflow, checkpoint + metrics."""

import argparse
import hashlib
import json

import mlflow

from mednns.data import load_prepared
from mednns.io import write_json
from mednns.supernet_train import SupernetConfig, SupernetTrainer
from pipelines.stage import params, run
from registry.tracking import tracked_run


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="train_supernet")
    parser.add_argument("dataset")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: params supernet.device)")
    args = parser.parse_args(argv)
    p = dict(params("supernet"))
    device = args.device or p.pop("device", "cpu")
    cfg = SupernetConfig.from_params(p)
    ds = load_prepared(f"data/prepared/{args.dataset}")
    ckpt = f"models/supernets/{args.dataset}.pt"
    settings = json.dumps({"cfg": p, "data": ds.spec.to_dict()}, sort_keys=True)
    key = f"train_supernet:{args.dataset}:{hashlib.sha1(settings.encode()).hexdigest()[:12]}"
    with tracked_run("supernets", key, {"dataset": args.dataset, "device": device, **p},
                     tags={"dataset": args.dataset, "stage": "train_supernet"},
                     run_name=f"supernet-{args.dataset}"):
        trainer = SupernetTrainer(ds, cfg, device=device)
        summary = trainer.fit(ckpt, on_epoch=lambda epoch, m: mlflow.log_metrics(m, step=epoch + 1))
        mlflow.log_metrics({f"final_{k}": v for k, v in summary["final"].items()})
        mlflow.log_metric("train_seconds", summary["train_seconds"])
        mlflow.set_tag("checkpoint", ckpt)
    write_json(f"metrics/supernet/{args.dataset}.json",
               {**summary["final"], "train_seconds": round(summary["train_seconds"], 1)})


if __name__ == "__main__":
    run(main)
