"""Stage `register`: every zoo subnet, supernet and champion, the meta-space and the zoo's whole networks,
in the MLflow registry."""

import argparse
from pathlib import Path

from mednns.utils.io import write_json
from pipelines.stage import config, datasets, run
from registry.models import RegisterConfig, register_metaspace, register_network, sync


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="register")
    parser.add_argument("--zoo", required=True, help="folder of zoo tables")
    parser.add_argument("--supernets", required=True)
    parser.add_argument("--metaspace", required=True)
    parser.add_argument("--networks", help="folder of the zoo's whole networks (<name>.pt), each registered too")
    parser.add_argument("--out", required=True, help="the sync's report (.json)")
    parser.add_argument("--workers", type=int, default=None, help="parallel requests (default: params register.workers)")
    args = parser.parse_args(argv)
    cfg = config("register", RegisterConfig)
    report = sync(args.zoo, args.supernets, workers=args.workers or cfg.workers, datasets=datasets() or None)
    metaspace = register_metaspace(args.metaspace, report=report)
    found = sorted(Path(args.networks).glob("*.pt")) if args.networks else []
    networks = [register_network(path, report=report) for path in found]
    write_json(args.out, {**report.to_dict(), "metaspace": metaspace, "networks": networks})


if __name__ == "__main__":
    run(main)
