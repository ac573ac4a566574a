"""Stage `convergence`: the selected start against random init and ResNet-18 on the held-out dataset."""

import json

from mednns.convergence import convergence
from mednns.data import load_prepared
from mednns.finetune import FinetuneConfig
from mednns.io import atomic_path
from pipelines.stage import params, run


def main(argv: list[str]) -> None:
    p, chosen = params("select"), json.load(open("metrics/select.json"))
    ds = load_prepared(f"data/holdout/{p['dataset']}")
    table = convergence(ds, "models/supernets", chosen["source_supernet"], chosen["arch_json"],
                        FinetuneConfig(epochs=int(p["convergence_epochs"])), device=p.get("device", "cpu"))
    with atomic_path("metrics/convergence.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")


if __name__ == "__main__":
    run(main)
