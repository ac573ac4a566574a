"""The meta-space's four losses. Each takes plain tensors, so each can be checked on a toy problem.

- performance: regression of the normalised score of (dataset, model) pairs;
- rank: listwise (ListNet, Cao et al. 2007) over one dataset's models, so the order comes out right
  even where the regression is off by a constant;
- FID: distances between dataset embeddings follow the normalised FID matrix (scale-free stress);
- contrastive: a dataset's embedding is pulled towards its BEST models and away from the rest
  (multi-positive InfoNCE; TANS took a random model of the dataset as its positive).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def performance_loss(pred: Tensor, target: Tensor) -> Tensor:
    return F.mse_loss(pred, target)


def rank_loss(pred: Tensor, target: Tensor, temperature: float = 0.5) -> Tensor:
    """ListNet top-one cross-entropy over one list (one dataset's models); minimal when
    softmax(pred) equals softmax(target / temperature), i.e. when pred orders them as target does."""
    return -(torch.softmax(target / temperature, dim=-1) * torch.log_softmax(pred, dim=-1)).sum(-1).mean()


def fid_loss(z: Tensor, fid: Tensor) -> Tensor:
    """Relative stress between embedding distances and FID, both divided by their off-diagonal mean.

    Dividing both sides leaves the embedding's overall scale to the other losses; only which datasets
    are near which (and by how much, relatively) is asked of it.
    """
    n = len(z)
    if n < 3:  # with two datasets the normalised distance is 1 whatever the embedding
        return z.sum() * 0.0
    off = ~torch.eye(n, dtype=torch.bool, device=z.device)
    d = (z[:, None, :] - z[None, :, :]).square().sum(-1).add(1e-9).sqrt()
    d = d[off]
    t = fid[off]
    return ((d / d.mean()) - (t / t.mean())).square().mean()


def contrastive_loss(anchor: Tensor, items: Tensor, positive: Tensor, temperature: float = 0.1) -> Tensor:
    """Multi-positive InfoNCE (SupCon-style) of one anchor against a list of items.

    anchor [dim], items [M, dim], positive [M] bool. Cosine similarity / temperature; the loss is the
    mean over positives of -log softmax over all items.
    """
    if not positive.any() or positive.all():
        return anchor.sum() * 0.0
    sim = F.normalize(items, dim=-1) @ F.normalize(anchor, dim=-1) / temperature
    return -(torch.log_softmax(sim, dim=0)[positive]).mean()
