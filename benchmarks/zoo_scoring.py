"""Zoo scoring speed on BloodMNIST at the demo settings (`params.yaml: zoo`).

Run: `MEDNNS_DATA_DIR=../shared/medmnist python -m benchmarks.zoo_scoring [--subnets 10] [--device cuda]`.

In one run it measures, on subnets the zoo itself scores in the zoo's own mix (the first archs of each
kind in the zoo's order: `transfer_per_dataset / num_archs` of them probed on every other dataset, the
rest own-only):
- the scorer's subnets per second (extract + recalibrate + score, transfer targets included);
- (a) the per-subnet cost over the bare forward passes it contains (every input the scorer feeds the
  subnet, replayed on an already extracted net): target <= 1.5x;
- (b) the speed-up over the naive loop on the very same subnets (deepcopy the supernet, extract,
  recalibrate and run full passes from uint8 for each target, no reuse, no channels_last; the same
  outputs): target >= 5x.
The supernet is `models/supernets/bloodmnist.pt` when present, else a freshly initialised one
(the speed of a forward pass does not depend on the weights).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
import yaml

from benchmarks.common import print_table
from mednns.utils.config import from_section
from mednns.train.batches import iterate, predict
from mednns.nn.bn import fold_bn, recalibrate_bn
from mednns.nn.checkpoint import load_supernet
from mednns.data import load_dataset
from mednns.train.metrics import evaluate_scores
from mednns.nn.supernet import Supernet
from mednns.zoo.build import ZooConfig, transfer_subset
from mednns.zoo.sampling import sample_unique
from mednns.zoo.scoring import SubnetScorer

SOURCE = "bloodmnist"
NAIVE_BATCH = 128


def _supernet(spec, device: str) -> tuple[Supernet, str]:
    path = Path(f"models/supernets/{SOURCE}.pt")
    if path.is_file():
        return load_supernet(path, device=device)[0], str(path)
    from mednns.nn.space import SearchSpace

    torch.manual_seed(0)
    net = Supernet(SearchSpace(), spec.channels, spec.num_classes, spec.image_size).to(device).eval()
    return net, "fresh (untrained) supernet"


def _zoo_mix(archs, with_transfer: set[str], n: int, fraction: float) -> list:
    """The first archs of each kind, in the zoo's order, as many transfer ones as the zoo has per arch."""
    n_transfer = min(n, max(1, round(n * fraction)))
    transfer = [a for a in archs if a.arch_id in with_transfer][:n_transfer]
    own = [a for a in archs if a.arch_id not in with_transfer][:n - len(transfer)]
    keep = {a.arch_id for a in transfer + own}
    return [a for a in archs if a.arch_id in keep]


class _ForwardRecorder:
    """Records every input that reaches a subnet's stem, i.e. every forward pass the scorer makes."""

    def __init__(self, supernet: Supernet):
        supernet.stem._bench_stem = True  # copied into every extracted subnet's stem
        self.inputs: list[tuple[torch.Tensor, bool]] = []
        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        if getattr(module, "_bench_stem", False):
            self.inputs.append((args[0], module.training))

    def close(self) -> None:
        self.handle.remove()


@torch.inference_mode()
def _replay(net, inputs: list[tuple[torch.Tensor, bool]]) -> None:
    """Train-mode inputs (recalibration) through `net`, eval-mode ones through it folded, as the scorer."""
    folded = fold_bn(net)
    for x, training in inputs:
        if training:
            net.train()
            net.forward_features(x)
        else:
            folded.forward_features(x)
    net.eval()


def _naive_score(supernet, source, targets, arch, cfg: ZooConfig, device: str) -> None:
    """What a first attempt does: a fresh copy of everything for every (arch, target) pair, and the
    same outputs as the scorer (own val and test scores, a transfer probe per target)."""
    spec = source.spec
    kw = {"channels": spec.channels, "size": spec.image_size, "device": device}
    recalib = source.images("train")[: cfg.recalib_images]
    for target in [source, *targets]:
        net = copy.deepcopy(supernet)
        net.set_active(arch)
        sub = net.extract(arch)
        recalibrate_bn(sub, (x for x, _ in iterate(recalib, None, NAIVE_BATCH, **kw)))
        with torch.no_grad():
            if target is source:
                for split in ("val", "test"):
                    evaluate_scores(source.labels(split), predict(sub, source.images(split), NAIVE_BATCH, **kw),
                                    spec.task)
                continue
            feats = {split: torch.cat([sub.forward_features(x) for x, _ in
                                       iterate(target.images(split)[:k], None, NAIVE_BATCH, **kw)]).numpy()
                     for split, k in (("train", cfg.probe_train_images), ("val", cfg.probe_val_images))}
            SubnetScorer.fit_probe(feats["train"], target.labels("train")[:cfg.probe_train_images], feats["val"],
                                   target.labels("val")[:cfg.probe_val_images], target.spec.task,
                                   target.spec.num_classes)


def run(subnets: int = 10, naive_subnets: int = 0, device: str = "cpu") -> tuple[list[dict], dict]:
    params = yaml.safe_load(Path("params.yaml").read_text())
    cfg = from_section(ZooConfig, params["zoo"], "zoo")
    source = load_dataset(SOURCE, download=False)
    targets = [load_dataset(n, download=False) for n in params["datasets"] if n != SOURCE]
    supernet, origin = _supernet(source.spec, device)
    all_archs = sample_unique(supernet.space, cfg.num_archs, cfg.seed)
    with_transfer = transfer_subset([a.arch_id for a in all_archs], cfg.transfer_per_dataset, cfg.seed)
    archs = _zoo_mix(all_archs, with_transfer, subnets, cfg.transfer_per_dataset / cfg.num_archs)
    target_names = [t.spec.name for t in targets]
    plan = [(a, target_names if a.arch_id in with_transfer else []) for a in archs]

    t0 = time.perf_counter()
    scorer = SubnetScorer(supernet, source, targets, cfg.scoring(), device=device)
    setup = time.perf_counter() - t0

    # The three alternate per subnet, so that the machine's drift (large here) hits them alike.
    by_name = {t.spec.name: t for t in targets}
    per_subnet, naive_each, bare = [], [], 0.0
    for i, (arch, tnames) in enumerate(plan):
        recorder = _ForwardRecorder(supernet)
        t0 = time.perf_counter()
        scorer.score(arch, tnames)
        per_subnet.append(time.perf_counter() - t0)
        recorder.close()
        net = scorer.extract(arch)
        t0 = time.perf_counter()
        _replay(net, recorder.inputs)
        bare += time.perf_counter() - t0
        if i < (naive_subnets or len(plan)):
            t0 = time.perf_counter()
            _naive_score(supernet, source, [by_name[n] for n in tnames], arch, cfg, device)
            naive_each.append(time.perf_counter() - t0)
    naive_plan = plan[:len(naive_each)]
    naive = sum(naive_each)
    scored = sum(per_subnet)
    fast_same = sum(per_subnet[:len(naive_plan)])  # the speed-up compares the same archs
    n = len(plan)
    rows = [
        {"method": "scorer (extract + recalibrate + score)", "s/subnet": scored / n,
         "subnets/s": n / scored, "vs bare forwards": scored / bare, "speed-up vs naive": naive / fast_same},
        {"method": "bare forward passes it contains", "s/subnet": bare / n, "subnets/s": n / bare,
         "vs bare forwards": 1.0, "speed-up vs naive": ""},
        {"method": f"naive loop (deepcopy, extract, full passes, no reuse; {len(naive_plan)} subnets)",
         "s/subnet": naive / len(naive_plan), "subnets/s": len(naive_plan) / naive, "vs bare forwards": "",
         "speed-up vs naive": 1.0},
    ]
    kinds = []
    for kind, probed in (("probed on every other dataset", True), ("own dataset only", False)):
        idx = [i for i, (_, t) in enumerate(naive_plan) if bool(t) == probed]
        if idx:
            fast_k, naive_k = sum(per_subnet[i] for i in idx), sum(naive_each[i] for i in idx)
            kinds.append({"subnets": f"{kind} ({len(idx)})", "scorer s/subnet": fast_k / len(idx),
                          "naive s/subnet": naive_k / len(idx), "speed-up": naive_k / fast_k})
    info = {"origin": origin, "setup_s": setup, "subnets": n,
            "transfer": sum(1 for _, t in plan if t), "targets": target_names, "overhead": scored / bare,
            "speedup": naive / fast_same, "kinds": kinds}
    return rows, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subnets", type=int, default=10)
    parser.add_argument("--naive-subnets", type=int, default=0, help="time the naive loop on the first K "
                        "subnets only (default: all of them)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rows, info = run(args.subnets, args.naive_subnets, args.device)
    print_table(f"Zoo scoring on {SOURCE}, demo settings, {args.device} ({torch.get_num_threads()} threads); "
                f"{info['subnets']} subnets, {info['transfer']} with transfer to {', '.join(info['targets'])}",
                rows)
    print_table("By kind of subnet", info["kinds"])
    print(f"\nsupernet: {info['origin']}; scorer set-up (once per supernet): {info['setup_s']:.1f} s")
    print(f"(a) per-subnet cost / bare forward passes: {info['overhead']:.2f}x (target <= 1.5x)")
    print(f"(b) speed-up over the naive loop: {info['speedup']:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
