"""Stage `leave_one_out`: the meta-space, trained without each dataset in turn, against baselines on
that dataset -> `<out>.json` (a DVC metric) and `<out>.md` (the README table)."""

import argparse
from pathlib import Path

from mednns.metaspace import DatasetFeatures, FeatureConfig, MetaSpaceConfig
from mednns.metaspace.loo import (EvaluateConfig, SubnetFeatures, leave_one_out, markdown, prepared_train_split,
                                  summary)
from mednns.utils.io import atomic_path, write_json
from mednns.zoo import BNStats, SubnetStore, ZooConfig, bn_stats_path, read_zoo
from pipelines.stage import config, datasets, run


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="leave_one_out")
    parser.add_argument("--zoo", required=True, help="folder of zoo tables and their BatchNorm statistics")
    parser.add_argument("--features", required=True)
    parser.add_argument("--supernets", required=True)
    parser.add_argument("--data", required=True, help="folder of prepared datasets (their train splits)")
    parser.add_argument("--out", required=True, help="results, without suffix")
    args = parser.parse_args(argv)
    names, zoo_dir, data = datasets(), Path(args.zoo), Path(args.data)
    cfg = config("evaluate", EvaluateConfig)
    zoo = read_zoo([zoo_dir / f"{d}.parquet" for d in names])
    features = {d: DatasetFeatures.load(Path(args.features) / f"{d}.npz") for d in names}
    subnets = SubnetFeatures(SubnetStore(args.supernets), lambda d: BNStats.load(bn_stats_path(zoo_dir / f"{d}.parquet")),
                             config("zoo", ZooConfig).eval_batch)
    results = leave_one_out(zoo, features, config("metaspace", MetaSpaceConfig), config("features", FeatureConfig),
                            cfg, subnets, lambda d: prepared_train_split(data / d))
    write_json(f"{args.out}.json", summary(results))
    with atomic_path(f"{args.out}.md") as tmp:
        tmp.write_text(markdown(results, cfg.top_k))


if __name__ == "__main__":
    run(main)
