"""Stage `convergence`: the selected start against random init and ResNet-18 on the held-out dataset."""

import argparse
import json
from dataclasses import replace

from mednns.data import load_prepared
from mednns.selector import FinetuneConfig, SelectConfig
from mednns.selector.convergence import convergence
from mednns.utils.io import atomic_path
from mednns.zoo import SubnetStore
from pipelines.stage import config, run


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="convergence")
    parser.add_argument("data", help="prepared folder of the held-out dataset")
    parser.add_argument("--selection", required=True, help="the select stage's metrics (.json): what it chose")
    parser.add_argument("--supernets", required=True)
    parser.add_argument("--networks", required=True, help="folder of the zoo's whole networks (stage pretrain)")
    parser.add_argument("--out", required=True, help="test accuracy per epoch (.csv)")
    args = parser.parse_args(argv)
    cfg, finetune = config("select", SelectConfig), config("finetune", FinetuneConfig)
    with open(args.selection) as f:
        chosen = json.load(f)
    table = convergence(load_prepared(args.data), SubnetStore(args.supernets, cfg.device, networks=args.networks), chosen["source_supernet"],
                        chosen["arch_json"], replace(finetune, epochs=cfg.convergence_epochs), device=cfg.device,
                        arch_id=chosen["arch_id"], pretrained_size=cfg.pretrained_size)
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")


if __name__ == "__main__":
    run(main)
