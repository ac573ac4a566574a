"""Stage `train_metaspace`: the meta-space from the zoo tables and dataset features, tracked in MLflow;
the model folder, its metrics, the loss curves and the 2-D map."""

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import mlflow

from mednns.metaspace import DatasetFeatures, FeatureConfig, MetaSpaceConfig, train_metaspace
from mednns.metaspace.mapping import metaspace_map, write_map
from mednns.metaspace.train import LOSSES
from mednns.utils.io import atomic_path, write_json
from mednns.zoo import read_zoo
from pipelines.stage import config, datasets, run
from registry.tracking import log_curves, run_key, tracked_run


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="train_metaspace")
    parser.add_argument("--zoo", required=True, help="folder of zoo tables")
    parser.add_argument("--features", required=True, help="folder of dataset features")
    parser.add_argument("--out", required=True, help="meta-space folder")
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--plots", required=True, help="folder for metaspace_loss.csv and metaspace_map.{csv,png}")
    args = parser.parse_args(argv)
    names = datasets()
    cfg, feature_cfg = config("metaspace", MetaSpaceConfig), config("features", FeatureConfig)
    zoo_files = [Path(args.zoo) / f"{d}.parquet" for d in names]
    feature_files = [Path(args.features) / f"{d}.npz" for d in names]
    zoo = read_zoo(zoo_files)
    features = {d: DatasetFeatures.load(f) for d, f in zip(names, feature_files)}
    key = run_key("train_metaspace", settings={"metaspace": asdict(cfg), "features": asdict(feature_cfg)},
                  files=[*zoo_files, *feature_files])
    with tracked_run("metaspace", key, {"metaspace": asdict(cfg), "features": asdict(feature_cfg),
                                        "datasets": ",".join(names)},
                     tags={"stage": "train_metaspace"}, run_name="metaspace") as active:
        t0 = time.time()
        ms, history = train_metaspace(zoo, features, cfg, feature_cfg)
        log_curves(active.info.run_id, history.rename(columns={c: f"loss_{c}" for c in ("total", *LOSSES)}))
        metrics = {**ms.config["metrics"], "candidates": len(ms.candidates), "seconds": round(time.time() - t0, 1)}
        mlflow.log_metrics({k: v for k, v in metrics.items() if v is not None})
        ms.save(args.out)
        mlflow.log_artifact(str(Path(args.out) / "config.json"))
        mlflow.set_tag("metaspace", args.out)
    write_json(args.metrics, metrics)
    plots = Path(args.plots)
    with atomic_path(plots / "metaspace_loss.csv") as tmp:
        history.to_csv(tmp, index=False, float_format="%.5f")
    write_map(metaspace_map(ms, features, zoo), plots / "metaspace_map.csv", plots / "metaspace_map.png")


if __name__ == "__main__":
    run(main)
