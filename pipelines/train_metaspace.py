"""Stage `train_metaspace`: the meta-space from zoo/*.parquet and features/*.npz, tracked in MLflow.

Writes models/metaspace/, metrics/metaspace.json, plots/metaspace_loss.csv and the 2-D map
(plots/metaspace_map.csv, plots/metaspace_map.png).
"""

import hashlib
import json
import time

import mlflow
from mlflow.entities import Metric

from mednns.io import atomic_path, sha256_file, write_json
from mednns.metaspace import DatasetFeatures, FeatureConfig, MetaSpaceConfig, train_metaspace
from mednns.metaspace.mapping import metaspace_map, write_map
from mednns.zoo import read_zoo
from pipelines.stage import params, run
from registry.tracking import tracked_run


def main(argv: list[str]) -> None:
    datasets = list(params("datasets"))
    p, fp = params("metaspace"), params("features")
    cfg, feature_cfg = MetaSpaceConfig.from_params(p), FeatureConfig.from_params(fp)
    zoo_files = [f"zoo/{d}.parquet" for d in datasets]
    zoo = read_zoo(zoo_files)
    features = {d: DatasetFeatures.load(f"features/{d}.npz") for d in datasets}
    inputs = {f: sha256_file(f) for f in [*zoo_files, *(f"features/{d}.npz" for d in datasets)]}
    key = "train_metaspace:" + hashlib.sha1(json.dumps({"p": p, "f": fp, "in": inputs}, sort_keys=True)
                                            .encode()).hexdigest()[:12]
    with tracked_run("metaspace", key, {"metaspace": p, "features": fp, "datasets": ",".join(datasets)},
                     tags={"stage": "train_metaspace"}, run_name="metaspace") as active:
        t0 = time.time()
        ms, history = train_metaspace(zoo, features, cfg, feature_cfg)
        now = int(time.time() * 1000)
        curves = [Metric(f"loss_{k}" if k != "lr" else k, float(v), now, int(r.step))
                  for r in history.itertuples() for k, v in r._asdict().items() if k not in ("Index", "step")]
        client = mlflow.tracking.MlflowClient()
        for i in range(0, len(curves), 1000):  # one request per 1000 points instead of one per point
            client.log_batch(active.info.run_id, metrics=curves[i:i + 1000])
        metrics = {**ms.config["metrics"], "candidates": len(ms.candidates), "seconds": round(time.time() - t0, 1)}
        mlflow.log_metrics({k: v for k, v in metrics.items() if v is not None})
        ms.save("models/metaspace")
        mlflow.log_artifact("models/metaspace/config.json")
        mlflow.set_tag("metaspace", "models/metaspace")
    write_json("metrics/metaspace.json", metrics)
    with atomic_path("plots/metaspace_loss.csv") as tmp:
        history.to_csv(tmp, index=False, float_format="%.5f")
    write_map(metaspace_map(ms, features, zoo), "plots/metaspace_map.csv", "plots/metaspace_map.png")


if __name__ == "__main__":
    run(main)
