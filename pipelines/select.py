"""Stage `select`: the selector on the dataset held out of the zoo: ONNX file, model card, registry entry."""

import argparse
from pathlib import Path

from mednns.data import load_prepared
from mednns.metaspace import MetaSpace
from mednns.selector import FinetuneConfig, SelectConfig, deliver, select
from mednns.utils.io import write_json
from mednns.zoo import SubnetStore
from pipelines.stage import config, run
from registry.selected import register_selection


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="select")
    parser.add_argument("data", help="prepared folder of the dataset to select for")
    parser.add_argument("--metaspace", required=True)
    parser.add_argument("--supernets", required=True)
    parser.add_argument("--networks", required=True, help="folder of the zoo's whole networks (stage pretrain)")
    parser.add_argument("--out", required=True, help="folder for <dataset>.onnx and its model card")
    parser.add_argument("--metrics", required=True)
    args = parser.parse_args(argv)
    cfg, finetune = config("select", SelectConfig), config("finetune", FinetuneConfig)
    ds = load_prepared(args.data)
    name = ds.spec.name
    sel = select(ds, MetaSpace.load(args.metaspace), SubnetStore(args.supernets, cfg.device, networks=args.networks), k=cfg.k,
                 budget=cfg.budget, finetune=finetune, probe_epochs=cfg.probe_epochs, pretrained=cfg.pretrained,
                 pretrained_size=cfg.pretrained_size, device=cfg.device, subnet_margin=cfg.subnet_margin)
    out = deliver(sel, ds, Path(args.out) / f"{name}.onnx", register=lambda d: register_selection(sel, ds, d))
    uri = out.registered
    write_json(args.metrics, {
        "dataset": name, "source_supernet": sel.chosen.source_dataset, "weights": sel.net.cfg.source, "arch_id": sel.chosen.arch_id,
        "arch_json": sel.net.cfg.arch, "val_acc": sel.val["acc"], "test_acc": sel.test["acc"],
        "test_auc": sel.test["auc"], "onnx_test_acc": out.onnx_test["acc"], "seconds": round(sel.seconds, 1),
        "registered": uri})


if __name__ == "__main__":
    run(main)
