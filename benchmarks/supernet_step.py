"""Supernet training step with the largest arch active vs the same static net extracted from it.

Run: `python -m benchmarks.supernet_step [--device cuda] [--batch 128]`. Target: elastic overhead
(supernet step / static step) at most 1.3x.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.common import print_table, time_interleaved
from mednns.nn.space import SearchSpace
from mednns.nn.supernet import Supernet


def run(device: str = "cpu", batch: int = 128, rounds: int = 8) -> list[dict]:
    torch.manual_seed(0)
    space = SearchSpace()
    fmt = torch.channels_last
    supernet = Supernet(space, in_channels=3, num_classes=8).to(device, memory_format=fmt)
    static = supernet.extract(space.largest()).to(device, memory_format=fmt)
    x = torch.randn(batch, 3, 28, 28, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 8, (batch,), device=device)
    rng = np.random.default_rng(0)
    random_arch = space.sample(rng)

    def step(net, opt, arch=None):
        def fn():
            if arch is not None:
                net.set_active(arch)
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
        return fn

    opt_super = torch.optim.SGD(supernet.parameters(), lr=1e-3, momentum=0.9)
    opt_static = torch.optim.SGD(static.parameters(), lr=1e-3, momentum=0.9)
    t = time_interleaved({
        "static largest": step(static, opt_static),
        "supernet largest": step(supernet, opt_super, space.largest()),
        "supernet smallest": step(supernet, opt_super, space.smallest()),
        "supernet random": step(supernet, opt_super, random_arch),
    }, rounds=rounds)
    base = t["static largest"]
    return [{"network": name, "ms/step": 1000 * s, "images/s": batch / s, "vs static largest": s / base}
            for name, s in t.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    rows = run(args.device, args.batch)
    print_table(f"Supernet training step, batch {args.batch}, 28 px, {args.device} "
                f"({torch.get_num_threads()} threads)", rows)
    overhead = rows[1]["vs static largest"]
    print(f"\nelastic overhead (supernet largest / static largest): {overhead:.2f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()
