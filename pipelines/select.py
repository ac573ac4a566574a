"""Stage `select`: the selector on the dataset held out of the zoo: ONNX file, model card, registry entry."""

from mednns.data import load_prepared
from mednns.deliver import deliver
from mednns.finetune import FinetuneConfig
from mednns.io import write_json
from mednns.metaspace import MetaSpace
from mednns.select import select
from pipelines.stage import params, run
from registry.selected import register_selection, selected_model_name


def main(argv: list[str]) -> None:
    p = params("select")
    name = p["dataset"]
    ds = load_prepared(f"data/holdout/{name}")
    sel = select(ds, MetaSpace.load("models/metaspace"), "models/supernets", k=int(p["k"]),
                 budget=p.get("budget") or {}, finetune=FinetuneConfig(epochs=int(p["finetune_epochs"])),
                 probe_epochs=int(p.get("probe_epochs", 0)), device=p.get("device", "cpu"))
    out = deliver(sel, ds, f"selection/{name}.onnx", registered_as=selected_model_name(name))
    uri = register_selection(sel, ds, out)
    write_json("metrics/select.json", {
        "dataset": name, "source_supernet": sel.chosen.source_dataset, "arch_id": sel.chosen.arch_id,
        "arch_json": sel.chosen.arch_json, "val_acc": sel.val["acc"], "test_acc": sel.test["acc"],
        "test_auc": sel.test["auc"], "onnx_test_acc": out.onnx_test["acc"], "seconds": round(sel.seconds, 1),
        "registered": uri})


if __name__ == "__main__":
    run(main)
