"""Stage `selection_benchmark`: every method's pick fine-tuned on every target dataset it has never seen
-> `<out>.csv` (every run), `<out>.json` (a DVC metric), `<out>.md` (the README tables) and a plot."""

import argparse
import tempfile
from dataclasses import asdict, replace
from functools import lru_cache
from pathlib import Path

import pandas as pd

from mednns.data import load_prepared
from mednns.metaspace import DatasetFeatures, FeatureConfig, MetaSpaceConfig, train_metaspace
from mednns.metaspace.loo import SubnetFeatures
from mednns.selector import FinetuneConfig, SelectConfig
from mednns.selector.benchmark import (METHODS, BenchmarkConfig, Target, candidates_without, markdown,
                                       needed_networks, networks_without, plot, run_target, summary)
from mednns.utils.errors import MedNNSError
from mednns.utils.io import atomic_path, write_json
from mednns.zoo import BNStats, SubnetStore, ZooConfig, bn_stats_path, read_zoo
from pipelines.networks import SECTIONS as NETWORK_SECTIONS, network_configs
from pipelines.stage import changed_settings, config, datasets, run

SECTIONS = ("benchmark", "finetune", "select", "metaspace", "features", *NETWORK_SECTIONS.values(), "zoo")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="selection_benchmark")
    parser.add_argument("holdout", nargs="*", help="prepared folders of datasets held out of the zoo")
    parser.add_argument("--zoo", required=True)
    parser.add_argument("--features", required=True)
    parser.add_argument("--supernets", required=True)
    parser.add_argument("--networks", required=True, help="folder of the zoo's whole networks (stage pretrain)")
    parser.add_argument("--data", required=True, help="folder of the zoo's prepared datasets")
    parser.add_argument("--out", required=True, help="results, without suffix")
    parser.add_argument("--plot", required=True, help="the figure (.png)")
    parser.add_argument("--methods", help="comma-separated methods of this run instead of benchmark.methods "
                                          "(an ad-hoc run outside DVC, with its own --out)")
    parser.add_argument("--targets", help="comma-separated target datasets instead of benchmark.targets "
                                          "(an ad-hoc run outside DVC, with its own --out)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a params.yaml setting changed for this run, repeatable (an ablation outside DVC, "
                             "with its own --out); recorded in <out>.json")
    args = parser.parse_args(argv)
    names, zoo_dir = datasets(), Path(args.zoo)
    changed = changed_settings(args.settings, SECTIONS)
    cfg, ft = config("benchmark", BenchmarkConfig, changed), config("finetune", FinetuneConfig, changed)
    if args.methods:
        cfg = replace(cfg, methods=tuple(m.strip() for m in args.methods.split(",")))
    if args.targets:
        cfg = replace(cfg, targets=tuple(t.strip() for t in args.targets.split(",")))
    unknown = sorted(set(cfg.methods) - set(METHODS))
    if unknown:
        raise MedNNSError(f"benchmark methods: unknown {', '.join(unknown)}; known: {', '.join(METHODS)} "
                          "(params.yaml benchmark.methods or --methods)")
    ms_cfg, feature_cfg = config("metaspace", MetaSpaceConfig, changed), config("features", FeatureConfig, changed)
    selector_cfg = config("select", SelectConfig, changed)
    device = selector_cfg.device
    zoo = read_zoo([zoo_dir / f"{d}.parquet" for d in names])
    features = {d: DatasetFeatures.load(Path(args.features) / f"{d}.npz") for d in names}
    continual = network_configs(changed)
    subnets = SubnetFeatures(SubnetStore(args.supernets, device),
                             lambda d: BNStats.load(bn_stats_path(zoo_dir / f"{d}.parquet")),
                             config("zoo", ZooConfig, changed).eval_batch)
    scratch = tempfile.TemporaryDirectory(prefix="mednns-benchmark-")

    def target(ds, exclude):
        @lru_cache(maxsize=None)
        def metaspace(seed):  # trained without the target: it is neither a source nor a target
            return train_metaspace(zoo, features, replace(ms_cfg, seed=seed), feature_cfg, exclude=exclude)[0]
        # The zoo's whole network without the target: trained again without it, here and now (once, as the
        # `pretrain` stage does for a user: not a cost of any method's query).
        networks = args.networks if not exclude else networks_without(
            Path(scratch.name) / ds.spec.name, lambda: [load_prepared(Path(args.data) / d) for d in names
                                                        if d not in exclude], continual)
        for name in needed_networks(cfg, selector_cfg) if exclude else ():
            networks(name)
        return Target(ds, metaspace, candidates_without(zoo, ds.spec.name),
                      {d: f for d, f in features.items() if d not in exclude},
                      SubnetStore(args.supernets, device, networks=networks))

    held_out = [Path(h).name for h in args.holdout]
    wanted = set(cfg.targets or [*names, *held_out])
    unknown = sorted(wanted - {*names, *held_out})
    if unknown:
        raise MedNNSError(f"benchmark targets: unknown {', '.join(unknown)}; neither a zoo dataset {names} nor a "
                          f"held-out one {held_out} (params.yaml benchmark.targets or --targets)")
    targets = [target(load_prepared(Path(args.data) / d), [d]) for d in names if d in wanted]
    targets += [target(load_prepared(h), []) for h in args.holdout if Path(h).name in wanted]
    with scratch:
        rows = pd.concat([run_target(t, cfg, ft, subnets, feature_cfg, device, selector_cfg) for t in targets],
                         ignore_index=True)
    with atomic_path(f"{args.out}.csv") as tmp:
        rows.to_csv(tmp, index=False, float_format="%.5f")
    kept = summary(rows)
    write_json(f"{args.out}.json", {
        "settings": {"benchmark": asdict(cfg), "finetune": asdict(ft), **({"changed": changed} if changed else {})},
        "mean": {regime: {m: {"test_acc": round(float(g.test_acc.mean()), 4),
                              "test_acc_seed_std": round(float(g.test_acc_std.mean()), 4),
                              "test_auc": round(float(g.test_auc.mean()), 4),
                              "regret": round(float(g.regret.mean()), 4),
                              "query_seconds": round(float(g.query_seconds.mean()), 2)}
                          for m, g in r.groupby("method")} for regime, r in kept.groupby("regime")}})
    with atomic_path(f"{args.out}.md") as tmp:
        tmp.write_text(markdown(rows, cfg.methods))
    with atomic_path(args.plot) as tmp:
        plot(rows, tmp, cfg.methods)


if __name__ == "__main__":
    run(main)
