"""Stage `train_supernet@<dataset>`: train one supernet, tracked in MLflow; checkpoint + metrics."""

import argparse
from dataclasses import asdict, replace

import mlflow

from mednns.data import load_prepared
from mednns.train.supernet import SupernetConfig, SupernetTrainer
from mednns.utils.io import write_json
from pipelines.stage import config, run
from registry.artifacts import md5_file
from registry.tracking import run_key, tracked_run


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="train_supernet")
    parser.add_argument("data", help="prepared dataset folder")
    parser.add_argument("checkpoint", help="output checkpoint (.pt)")
    parser.add_argument("metrics", help="output metrics (.json)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: params supernet.device)")
    args = parser.parse_args(argv)
    cfg = config("supernet", SupernetConfig)
    cfg = replace(cfg, device=args.device or cfg.device)
    ds = load_prepared(args.data)
    name = ds.spec.name
    settings = {k: v for k, v in asdict(cfg).items() if k != "device"}
    with tracked_run("supernets", run_key("train_supernet", name, settings={"cfg": settings, "data": ds.spec.to_dict()}),
                     {"dataset": name, **asdict(cfg)}, tags={"dataset": name, "stage": "train_supernet"},
                     run_name=f"supernet-{name}"):
        summary = SupernetTrainer(ds, cfg).fit(args.checkpoint,
                                               on_epoch=lambda epoch, m: mlflow.log_metrics(m, step=epoch + 1))
        mlflow.log_metrics({f"final_{k}": v for k, v in summary["final"].items()})
        mlflow.log_metric("train_seconds", summary["train_seconds"])
        mlflow.set_tag("checkpoint", args.checkpoint)
        # how the registrar finds this run: its model versions point here, beside params and metrics
        mlflow.set_tag("checkpoint_md5", md5_file(args.checkpoint))
    write_json(args.metrics, {**summary["final"], "train_seconds": round(summary["train_seconds"], 1)})


if __name__ == "__main__":
    run(main)
