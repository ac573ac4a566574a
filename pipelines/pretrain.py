"""Stage `pretrain@<name>`: one of the zoo's whole networks trained on every dataset of the zoo (the ImageNet
EfficientNet-Lite0 trained further, MedMNIST v2's ResNet-18 from scratch), tracked in MLflow -> the network
file (`models/pretrained/<name>.pt`) + metrics."""

import argparse
from dataclasses import asdict
from pathlib import Path

from mednns.data import load_prepared
from mednns.nn.checkpoint import save_network
from mednns.train.continual import continual_pretrain
from mednns.utils.io import write_json
from pipelines.networks import SECTIONS, network_configs
from pipelines.stage import datasets, run


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="pretrain")
    parser.add_argument("--network", required=True, choices=sorted(SECTIONS), help="which of the zoo's networks")
    parser.add_argument("--data", required=True, help="folder of the zoo's prepared datasets")
    parser.add_argument("--out", required=True, help="the network file (.pt)")
    parser.add_argument("--metrics", required=True, help="output metrics (.json)")
    args = parser.parse_args(argv)
    cfg = network_configs()[args.network]
    sources = [load_prepared(Path(args.data) / d) for d in datasets()]
    import mlflow

    from registry.artifacts import md5_file
    from registry.tracking import run_key, tracked_run

    names = [ds.spec.name for ds in sources]
    with tracked_run("pretrain", run_key("pretrain", args.network, *names, settings={"cfg": asdict(cfg),
                                                                       "data": [ds.spec.to_dict() for ds in sources]}),
                     {"sources": ",".join(names), **asdict(cfg)}, tags={"stage": "pretrain", "network": args.network},
                     run_name=f"pretrain {args.network}"):
        net, summary = continual_pretrain(sources, cfg)
        mlflow.log_metrics({f"val_acc_{d}": s["acc"] for d, s in summary["val"].items()})
        mlflow.log_metric("train_seconds", summary["seconds"])
        save_network(args.out, net, summary)
        mlflow.set_tag("network", args.out)
        # how the registrar finds this run: the network's registry version points here
        mlflow.set_tag("network_md5", md5_file(args.out))
    write_json(args.metrics, {"sources": names, "seconds": summary["seconds"],
                              "images_per_second": summary["images_per_second"],
                              "val_acc": {d: s["acc"] for d, s in summary["val"].items()}})


if __name__ == "__main__":
    run(main)
