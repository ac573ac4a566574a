"""The three networks of the meta-space: a dataset (set) encoder, a model encoder, a performance head."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class SetEncoder(nn.Module):
    """A set of per-image features -> one dataset embedding, whatever the set's size or order.

    DeepSets (Zaheer et al. 2017): phi per element, a symmetric pooling, rho on the pooled vector.
    The pooling is the mean (robust for any size) and a learned-query attention pool (PMA, Lee et al.
    2019), which can weigh the images that say most about the dataset. Nothing depends on the
    elements' positions, so the output is invariant to their order.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, heads: int = 4):
        super().__init__()
        self.phi = mlp([in_dim, hidden, hidden])
        self.query = nn.Parameter(torch.randn(1, 1, hidden) * hidden ** -0.5)
        self.attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.rho = mlp([2 * hidden, hidden, out_dim])

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, N, in_dim] (or [N, in_dim]) -> [B, out_dim] (or [out_dim])."""
        single = x.ndim == 2
        if single:
            x = x.unsqueeze(0)
        h = self.phi(x)
        pooled, _ = self.attn(self.query.expand(len(h), -1, -1), h, h, need_weights=False)
        z = self.rho(torch.cat([pooled[:, 0], h.mean(1)], dim=1))
        return z[0] if single else z


class ModelEncoder(nn.Module):
    """A zoo model = (arch, weights trained on a source dataset) -> embedding.

    Three views add up: the arch encoding (what the network is), the functional embedding (what its
    features do on a fixed probe input) and the source dataset's embedding (what its weights were
    trained on), so transfer from a source similar to the query can be recognised.
    """

    def __init__(self, enc_dim: int, emb_dim: int, src_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.arch = nn.Linear(enc_dim, hidden)
        self.func = nn.Linear(emb_dim, hidden)
        self.source = nn.Linear(src_dim, hidden)
        self.mlp = nn.Sequential(nn.GELU(), mlp([hidden, hidden, out_dim]))

    def forward(self, encoding: Tensor, embedding: Tensor, source_code: Tensor) -> Tensor:
        return self.mlp(self.arch(encoding) + self.func(embedding) + self.source(source_code))


class PerformanceHead(nn.Module):
    """(dataset, model, model's source dataset) embeddings -> predicted normalised score of the pair.

    Besides both embeddings and their product, the head sees the distance between the dataset and the
    model's source in the meta-space, which the FID loss ties to how different their images are: the
    one signal that carries over to a dataset never seen in training.
    """

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = mlp([3 * dim + 1, hidden, 1])

    def forward(self, zd: Tensor, zm: Tensor, zsrc: Tensor) -> Tensor:
        """zd, zm, zsrc: [M, dim] (zd broadcast from [dim]) -> [M]."""
        zd = zd.expand_as(zm)
        dist = (zd - zsrc).square().sum(-1, keepdim=True).add(1e-9).sqrt()
        return self.net(torch.cat([zd, zm, zd * zm, dist], dim=-1)).squeeze(-1)
