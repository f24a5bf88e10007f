"""The GAT family on a generated citation-like graph: node classification with few labels.

A stochastic block model (:func:`simqos.models.paper.sbm_graph`) of 6,000 nodes in 7
communities — the classes — with 12,000 undirected edges, 80 % of them inside a community
(Cora's average degree is 3.9), plus self-loops. Each node has 500 binary bag-of-words
features: every word appears with probability 1 %, and each class has 40 words of its own that
appear with probability 4 % — a weak signal spread thinly over many features, so a node's
class is uncertain from its words alone and its neighbours' words help. As on Cora, only 20
nodes per class are labelled for training (140); 500 are for validation and the other 5,360
for test. All from one seed (``torch.Generator``).

The model is :class:`simqos.models.paper.GAT`: two graph-attention layers (8 heads x ``hidden``
— 8, as GAT on Cora, by default; the shipped bundle's 32 gives level 0 more hidden units to
spread its kept inputs over — then 1 head x 7 classes) with GAT's dropout of 0.6 on each
layer's input while training; its input is the whole feature matrix (no batch dimension),
trained full-batch. A reroute point between the two layers.
"""

from __future__ import annotations

import torch

from simqos.models.paper import GAT, sbm_graph
from simqos.models.spec import IGNORE, Dataset, ModelSpec

__all__ = ["gat_sbm", "make_graph"]

CLASSES = 7


def make_graph(nodes: int = 6_000, edges: int = 12_000, features: int = 500, class_words: int = 40,
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(edge index (2, E), features (nodes, features) float, labels (nodes,))`` of the graph in
    the module docstring; node i is in community ``i % 7``."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(nodes) % CLASSES
    rate = torch.full((CLASSES, features), 0.01)
    words = torch.randperm(features, generator=g)[: CLASSES * class_words].view(CLASSES, class_words)
    for c in range(CLASSES):
        rate[c, words[c]] = 0.04
    x = (torch.rand(nodes, features, generator=g) < rate[labels]).float()
    return sbm_graph(nodes, edges, CLASSES, 0.8, seed), x, labels


def _masks(labels: torch.Tensor, per_class: int, validation: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Labels for training (``per_class`` of each class), validation and test, IGNORE elsewhere."""
    g = torch.Generator().manual_seed(seed + 1)
    order = torch.randperm(len(labels), generator=g)
    train = torch.cat([order[labels[order] == c][:per_class] for c in range(CLASSES)])
    rest = order[~torch.isin(order, train)]
    out = []
    for chosen in (train, rest[:validation], rest[validation:]):
        y = torch.full_like(labels, IGNORE)
        y[chosen] = labels[chosen]
        out.append(y)
    return tuple(out)


def gat_sbm(nodes: int = 6_000, features: int = 500, seed: int = 0, hidden: int = 8) -> ModelSpec:
    """The GAT of the module docstring on its generated graph (``nodes`` shrinks it for tests;
    ``hidden`` is each first-layer head's width)."""
    edges, x, labels = make_graph(nodes, 2 * nodes, features, min(40, features // CLASSES), seed)
    y_train, y_val, y_test = _masks(labels, 20, min(500, nodes // 6), seed)
    data = Dataset(
        f"stochastic block model, {nodes} nodes in {CLASSES} communities, {features} noisy word features; "
        f"{int((y_train != IGNORE).sum())} labelled nodes, seed {seed}",
        x, y_train, x, y_val, x, y_test, metric="node accuracy", unit="node",
    )
    torch.manual_seed(seed)
    module = GAT(edges, features=features, classes=CLASSES, dropout=0.6, hidden=hidden)
    return ModelSpec("gat_sbm", module, x, None, data, f"GAT 2 layers (8x{hidden} heads, {CLASSES} classes) on a generated "
                     f"citation-like graph, {nodes} nodes, {features} features", batch_dim=None)
