"""Seeded sampling of distinct archs: the largest and the smallest first, then uniform draws."""

from __future__ import annotations

import numpy as np

from mednns.nn.space import Arch, SearchSpace


def sample_unique(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """`n` distinct archs (fewer if the space is smaller), the same list for the same seed."""
    n = min(n, space.count())
    archs = {a.arch_id: a for a in (space.largest(), space.smallest())}
    rng = np.random.default_rng(seed)
    misses = 0
    while len(archs) < n:
        arch = space.sample(rng)
        if arch.arch_id in archs:
            misses += 1
            if misses > 100 * n:  # uniform-per-choice sampling can starve rare archs in tiny spaces
                break
            continue
        archs[arch.arch_id] = arch
    return list(archs.values())[:n]
