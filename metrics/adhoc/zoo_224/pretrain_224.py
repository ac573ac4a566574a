# Ad hoc (README ablation): the zoo-trained EfficientNet pre-trained at 224 px. Run from the repo root:
# PYTHONPATH=. python metrics/adhoc/zoo_224/pretrain_224.py OUT.pt
import sys
from dataclasses import replace
from pathlib import Path
from mednns.data import load_prepared
from mednns.nn.checkpoint import save_network
from pipelines.networks import network_configs
from pipelines.stage import datasets
cfg = replace(network_configs()["efficientnet_lite0_zoo"], image_size=224)
sources = [load_prepared(Path("data/prepared") / d) for d in datasets()]
from mednns.train.continual import continual_pretrain
net, summary = continual_pretrain(sources, cfg)
save_network(sys.argv[1], net, summary)
print(summary["seconds"], {d: s["acc"] for d, s in summary["val"].items()})
