"""Stage `train_supernet@<dataset>`: train one supernet, tracked in MLflow; checkpoint + metrics.

With `supernet.nproc > 1` the stage re-launches itself under torchrun (`nproc` processes on this node);
launched by torchrun across nodes (README: scale-out) it joins that run. Rank 0 alone writes the
checkpoint, the metrics and the MLflow run.
"""

import argparse
import os
import sys
from dataclasses import asdict, replace

from mednns import MedNNSError
from mednns.data import load_prepared
from mednns.train import distributed
from mednns.train.supernet import SupernetConfig, SupernetTrainer
from mednns.utils.io import write_json
from pipelines.stage import config, run


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="train_supernet")
    parser.add_argument("data", help="prepared dataset folder")
    parser.add_argument("checkpoint", help="output checkpoint (.pt)")
    parser.add_argument("metrics", help="output metrics (.json)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: params supernet.device)")
    args = parser.parse_args(argv)
    cfg = config("supernet", SupernetConfig)
    cfg = replace(cfg, device=args.device or cfg.device)
    ds = load_prepared(args.data)  # a bad input fails here, before any process is launched
    if cfg.nproc > 1 and not distributed.under_torchrun():
        sys.exit(distributed.torchrun_main(cfg.nproc, "pipelines.train_supernet", argv))
    world = int(os.environ.get("WORLD_SIZE", 1))
    if distributed.under_torchrun() and world != cfg.nproc:
        # nproc is part of what was trained (BatchNorm sees a slice per process): params.yaml must say it.
        raise MedNNSError(f"torchrun started {world} processes but params.yaml supernet.nproc is {cfg.nproc}: "
                          f"set it to {world}")
    with distributed.process_group(cfg.device) as ranks:
        trainer = SupernetTrainer(ds, cfg)
        if not ranks.main:
            trainer.fit(args.checkpoint)
            return
        import mlflow  # only rank 0 tracks: the other ranks never load MLflow

        from registry.artifacts import md5_file
        from registry.tracking import run_key, tracked_run

        name = ds.spec.name
        settings = {k: v for k, v in asdict(cfg).items() if k != "device"}
        with tracked_run("supernets", run_key("train_supernet", name, settings={"cfg": settings, "data": ds.spec.to_dict()}),
                         {"dataset": name, **asdict(cfg)}, tags={"dataset": name, "stage": "train_supernet"},
                         run_name=f"supernet-{name}"):
            summary = trainer.fit(args.checkpoint, on_epoch=lambda epoch, m: mlflow.log_metrics(m, step=epoch + 1))
            mlflow.log_metrics({f"final_{k}": v for k, v in summary["final"].items()})
            mlflow.log_metric("train_seconds", summary["train_seconds"])
            mlflow.set_tag("checkpoint", args.checkpoint)
            # how the registrar finds this run: its model versions point here, beside params and metrics
            mlflow.set_tag("checkpoint_md5", md5_file(args.checkpoint))
    write_json(args.metrics, {**summary["final"], "train_seconds": round(summary["train_seconds"], 1)})


if __name__ == "__main__":
    run(main)
