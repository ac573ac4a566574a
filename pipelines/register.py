"""Stage `register`: every zoo subnet, supernet and champion, and the meta-space, in the MLflow registry."""

import argparse
from pathlib import Path

from mednns.io import write_json
from pipelines.stage import params, run
from registry.models import register_metaspace, sync


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="register")
    parser.add_argument("--workers", type=int, default=None,
                        help="parallel requests (default: params register.workers)")
    args = parser.parse_args(argv)
    p = params("register")
    report = sync("zoo", "models/supernets", workers=args.workers or p.get("workers", 8),
                  datasets=params("datasets") or None)
    out = report.to_dict()
    if Path("models/metaspace").is_dir():
        out["metaspace"] = register_metaspace("models/metaspace")
    write_json("metrics/register.json", out)


if __name__ == "__main__":
    run(main)
