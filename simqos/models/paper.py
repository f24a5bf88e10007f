"""The paper's four model families, in plain torch (no torchvision), with deterministic weights.

No dataset for them ships here, so their profiles carry latency, bytes and FLOPs, and say that
accuracy is unavailable. Weights are torch's default initialisation under a fixed seed; nested
levels come from layer-wise magnitude pruning of them (``NestedNetwork.from_magnitude``).

- ``resnet50``: ResNet-50 (bottleneck blocks 3-4-6-3, 1,000 classes) on a 1x3x224x224 image;
  a reroute point after every bottleneck block (16 segments of blocks, plus the stem and fc).
- ``pointnet2``: PointNet++ classification with single-scale grouping (SA 512 points r=0.2 k=32
  MLP 64-64-128; SA 128 points r=0.4 k=64 MLP 128-128-256; global SA MLP 256-512-1024; FC
  512-256-40) on 1,024 points drawn uniformly in the unit ball (seed 0). Farthest-point
  sampling starts at point 0, so it is deterministic. A reroute point after each SA and FC.
- ``gnmt``: a GNMT-style LSTM encoder-decoder with attention, sized down so that it profiles
  in minutes on one core: vocabulary 8,000, embeddings and hidden 512, encoder 2 layers (the
  first bidirectional), decoder 2 layers, Luong attention (general score) from the first
  decoder layer's outputs, source and target 16 tokens, teacher forcing (one pass over the
  target, as when scoring). Input: source and target token ids side by side, shape (1, 32).
- ``gat``: a 2-layer graph attention network, Cora-sized: 2,708 nodes with 1,433 binary
  features (1.27 % set, Cora's average), 8 heads x 8 hidden then 1 head x 7 classes, on a
  synthetic graph from a stochastic block model (7 equal communities; 5,429 undirected edges,
  Cora's count, 80 % inside communities; seed 0) plus self-loops. The input is the whole
  feature matrix: there is no batch dimension.
"""

from __future__ import annotations

import torch
from torch import nn

from simqos.kernels.graph import in_edge_sum, in_edges
from simqos.kernels.points import ball_group, farthest_points
from simqos.models.spec import ModelSpec

__all__ = ["gat", "gnmt", "pointnet2", "resnet50"]


# --- ResNet-50 -------------------------------------------------------------------------------


class Bottleneck(nn.Module):
    """ResNet-50's bottleneck block (1x1 down, 3x3, 1x1 up by 4, projection shortcut when the
    shape changes), in ``dim`` = 1 or 2 spatial dimensions."""

    def __init__(self, in_ch: int, mid: int, stride: int, dim: int = 2) -> None:
        super().__init__()
        conv, norm = (nn.Conv1d, nn.BatchNorm1d) if dim == 1 else (nn.Conv2d, nn.BatchNorm2d)
        out = mid * 4
        self.conv1, self.bn1 = conv(in_ch, mid, 1, bias=False), norm(mid)
        self.conv2, self.bn2 = conv(mid, mid, 3, stride, 1, bias=False), norm(mid)
        self.conv3, self.bn3 = conv(mid, out, 1, bias=False), norm(out)
        self.downsample = None
        if stride != 1 or in_ch != out:
            self.downsample = nn.Sequential(conv(in_ch, out, 1, stride, bias=False), norm(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        return torch.relu(self.bn3(self.conv3(y)) + identity)


class BottleneckResNet(nn.Module):
    """A stem convolution (and, in 2D, ResNet's 3x3 max-pool), stages of :class:`Bottleneck`
    blocks — widths ``mids`` (outputs 4x), ``counts`` blocks each, the first of every stage
    after the first at stride 2 — global average pooling and a linear classifier. ResNet-50 is
    ``mids=(64, 128, 256, 512)``, ``counts=(3, 4, 6, 3)`` in 2D."""

    def __init__(self, dim: int, in_ch: int, stem: int, stem_kernel: int, stem_stride: int,
                 mids: tuple[int, ...], counts: tuple[int, ...], classes: int) -> None:
        super().__init__()
        conv, norm = (nn.Conv1d, nn.BatchNorm1d) if dim == 1 else (nn.Conv2d, nn.BatchNorm2d)
        self.dim = dim
        self.conv1 = conv(in_ch, stem, stem_kernel, stem_stride, stem_kernel // 2, bias=False)
        self.bn1 = norm(stem)
        blocks, ch = [], stem
        for stage, (mid, count) in enumerate(zip(mids, counts)):
            for i in range(count):
                blocks.append(Bottleneck(ch, mid, 2 if stage > 0 and i == 0 else 1, dim))
                ch = mid * 4
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(ch, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        if self.dim == 2:
            x = torch.max_pool2d(x, 3, 2, 1)
        x = self.blocks(x)
        return self.fc(x.flatten(2).mean(dim=2))

    def block_ends(self) -> tuple[str, ...]:
        """The stem and the last prunable layer each block runs (conv3, or its projection
        shortcut when it has one): a reroute point after each."""
        ends = [f"blocks.{i}.downsample.0" if b.downsample is not None else f"blocks.{i}.conv3" for i, b in enumerate(self.blocks)]
        return ("conv1", *ends)


def resnet50(seed: int = 0) -> ModelSpec:
    """ResNet-50 at 224x224; see the module docstring."""
    torch.manual_seed(seed)
    module = BottleneckResNet(2, 3, 64, 7, 2, (64, 128, 256, 512), (3, 4, 6, 3), 1000).eval()
    return ModelSpec("resnet50", module, torch.randn(1, 3, 224, 224), module.block_ends(), None, "ResNet-50, 224x224, 1000 classes")


# --- PointNet++ ------------------------------------------------------------------------------


class SetAbstraction(nn.Module):
    def __init__(self, n_points: int | None, radius: float, k: int, in_ch: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.n_points, self.radius, self.k = n_points, radius, k
        layers, ch = [], in_ch + 3
        for w in widths:
            layers += [nn.Conv2d(ch, w, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            ch = w
        self.mlp = nn.Sequential(*layers)

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        b = xyz.shape[0]
        if self.n_points is None:  # group everything around the origin
            centres = torch.zeros(b, 1, 3)
            grouped = xyz[:, None]
            g_feats = None if feats is None else feats[:, None]
        else:
            centres = xyz[torch.arange(b)[:, None], farthest_points(xyz, self.n_points)]
            idx = ball_group(xyz, centres, self.radius, self.k)
            batch = torch.arange(b)[:, None, None]
            grouped = xyz[batch, idx] - centres[:, :, None]
            g_feats = None if feats is None else feats[batch, idx]
        x = grouped if g_feats is None else torch.cat([grouped, g_feats], dim=-1)
        x = self.mlp(x.permute(0, 3, 2, 1))  # (B, C, k, S)
        return centres, x.max(dim=2).values.transpose(1, 2)


class PointNet2(nn.Module):
    """PointNet++ classification with single-scale grouping: two set abstractions (``centres``
    sampled by farthest points, ``neighbours`` within ``radii``), a global one, and an MLP head
    ``fc`` with batch norm. The defaults are the full-size model of the module docstring."""

    def __init__(
        self,
        classes: int = 40,
        centres: tuple[int, int] = (512, 128),
        radii: tuple[float, float] = (0.2, 0.4),
        neighbours: tuple[int, int] = (32, 64),
        widths: tuple[tuple[int, ...], ...] = ((64, 64, 128), (128, 128, 256), (256, 512, 1024)),
        fc: tuple[int, int] = (512, 256),
    ) -> None:
        super().__init__()
        self.sa1 = SetAbstraction(centres[0], radii[0], neighbours[0], 0, widths[0])
        self.sa2 = SetAbstraction(centres[1], radii[1], neighbours[1], widths[0][-1], widths[1])
        self.sa3 = SetAbstraction(None, 0.0, 0, widths[1][-1], widths[2])
        self.fc1, self.bn1 = nn.Linear(widths[2][-1], fc[0], bias=False), nn.BatchNorm1d(fc[0])
        self.fc2, self.bn2 = nn.Linear(fc[0], fc[1], bias=False), nn.BatchNorm1d(fc[1])
        self.fc3 = nn.Linear(fc[1], classes)

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        centres, feats = self.sa1(xyz, None)
        centres, feats = self.sa2(centres, feats)
        _, feats = self.sa3(centres, feats)
        x = feats[:, 0]
        x = torch.relu(self.bn1(self.fc1(x)))
        x = torch.relu(self.bn2(self.fc2(x)))
        return self.fc3(x)


def pointnet2(seed: int = 0) -> ModelSpec:
    """PointNet++ SSG classification on 1,024 points; see the module docstring."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(0)
    direction = torch.nn.functional.normalize(torch.randn(1, 1024, 3, generator=g), dim=-1)
    points = direction * torch.rand(1, 1024, 1, generator=g) ** (1 / 3)
    ends = ("sa1.mlp.6", "sa2.mlp.6", "sa3.mlp.6", "fc1", "fc2")
    return ModelSpec("pointnet2", PointNet2().eval(), points, ends, None, "PointNet++ SSG classification, 1024 points, 40 classes")


# --- GNMT ------------------------------------------------------------------------------------


class GNMT(nn.Module):
    """GNMT-style encoder-decoder: an LSTM encoder (the first layer bidirectional), an LSTM
    decoder with Luong "general" attention between its two layers, a linear output.

    Its input is the source then the decoder's input tokens, one row per sentence. Training
    (and, unless ``free_running``, inference) is teacher-forced: the decoder reads the correct
    previous tokens, all at once. With ``free_running``, inference decodes greedily as a
    deployed translator does: it starts from the first decoder token (BOS), feeds each
    predicted token back in, one step at a time, for as many steps as the decoder input has
    (the later decoder tokens are not read), so every request costs the same steps."""

    def __init__(self, vocab: int = 8000, hidden: int = 512, src_len: int = 16, free_running: bool = False) -> None:
        super().__init__()
        self.src_len, self.free_running = src_len, free_running
        self.src_embed = nn.Embedding(vocab, hidden)
        self.tgt_embed = nn.Embedding(vocab, hidden)
        self.enc1 = nn.LSTM(hidden, hidden // 2, bidirectional=True, batch_first=True)
        self.enc2 = nn.LSTM(hidden, hidden, batch_first=True)
        self.dec1 = nn.LSTM(hidden, hidden, batch_first=True)
        self.attn = nn.Linear(hidden, hidden, bias=False)
        self.dec2 = nn.LSTM(2 * hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def _decode(self, tgt: torch.Tensor, enc: torch.Tensor, states: tuple) -> tuple[torch.Tensor, tuple]:
        """Decoder over the tokens ``tgt`` (batch, steps), from the LSTM ``states``: logits, states."""
        dec, s1 = self.dec1(self.tgt_embed(tgt), states[0])
        scores = torch.bmm(self.attn(dec), enc.transpose(1, 2))  # Luong "general"
        context = torch.bmm(torch.softmax(scores, dim=-1), enc)
        dec, s2 = self.dec2(torch.cat([dec, context], dim=-1), states[1])
        return self.out(dec), (s1, s2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        src, tgt = tokens[:, : self.src_len], tokens[:, self.src_len :]
        enc, _ = self.enc1(self.src_embed(src))
        enc, _ = self.enc2(enc)
        if self.training or not self.free_running:
            return self._decode(tgt, enc, (None, None))[0]
        steps, token, states = [], tgt[:, :1], (None, None)
        for _ in range(tgt.shape[1]):
            logits, states = self._decode(token, enc, states)
            steps.append(logits)
            token = logits.argmax(dim=-1)
        return torch.cat(steps, dim=1)


def gnmt(seed: int = 0) -> ModelSpec:
    """GNMT-style encoder-decoder, 16 + 16 tokens; see the module docstring."""
    torch.manual_seed(seed)
    tokens = torch.randint(0, 8000, (1, 32), generator=torch.Generator().manual_seed(0))
    ends = ("enc1", "enc2", "dec1", "attn", "dec2")
    return ModelSpec("gnmt", GNMT().eval(), tokens, ends, None, "GNMT-style LSTM encoder-decoder with attention, vocab 8000, hidden 512, 2+2 layers, 16+16 tokens")


# --- GAT -------------------------------------------------------------------------------------


def sbm_graph(nodes: int = 2708, edges: int = 5429, blocks: int = 7, inside: float = 0.8, seed: int = 0) -> torch.Tensor:
    """Undirected edges (2, 2E + nodes) of a stochastic block model, both directions, plus
    self-loops: ``edges`` distinct pairs, a share ``inside`` of them within a community."""
    g = torch.Generator().manual_seed(seed)
    block = torch.arange(nodes) % blocks
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < edges:
        a = int(torch.randint(nodes, (1,), generator=g))
        if torch.rand(1, generator=g).item() < inside:
            same = torch.nonzero(block == block[a]).squeeze(1)
            b = int(same[torch.randint(len(same), (1,), generator=g)])
        else:
            b = int(torch.randint(nodes, (1,), generator=g))
        if a != b:
            pairs.add((min(a, b), max(a, b)))
    e = torch.tensor(sorted(pairs)).T
    loops = torch.arange(nodes).expand(2, nodes)
    return torch.cat([e, e.flip(0), loops], dim=1)


class GATLayer(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, heads: int) -> None:
        super().__init__()
        self.heads, self.out_ch = heads, out_ch
        self.proj = nn.Linear(in_ch, heads * out_ch, bias=False)
        self.att_src = nn.Parameter(torch.randn(heads, out_ch) * 0.1)
        self.att_dst = nn.Parameter(torch.randn(heads, out_ch) * 0.1)

    def forward(self, x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Attention over the edges ``src -> dst``, sorted by destination, ``rows`` their CSR row
        pointers; the weighted sum over each node's in-edges is :func:`~simqos.kernels.graph.in_edge_sum`."""
        n = x.shape[0]
        h = self.proj(x).view(n, self.heads, self.out_ch)
        logits = torch.nn.functional.leaky_relu((h * self.att_src).sum(-1)[src] + (h * self.att_dst).sum(-1)[dst], 0.2)
        weight = (logits - logits.max()).exp()
        share = weight / torch.zeros(n, self.heads).index_add_(0, dst, weight)[dst]
        return in_edge_sum(rows, src, dst, share, h)


class GAT(nn.Module):
    """Two graph-attention layers (8 heads x ``hidden``, then 1 head x ``classes``) over the
    fixed ``edges`` (every node in at least one: the graphs here have self-loops); ``dropout``
    on each layer's input while training (GAT's usual regulariser on few labels; none at
    inference)."""

    def __init__(self, edges: torch.Tensor, features: int = 1433, classes: int = 7, dropout: float = 0.0,
                 hidden: int = 8) -> None:
        super().__init__()
        for name, tensor in zip(("src", "dst", "rows"), in_edges(edges, int(edges.max()) + 1)):
            self.register_buffer(name, tensor)
        self.dropout = dropout
        self.layer1 = GATLayer(features, hidden, 8)
        self.layer2 = GATLayer(8 * hidden, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        drop = torch.nn.functional.dropout
        graph = self.src, self.dst, self.rows
        h = torch.nn.functional.elu(self.layer1(drop(x, self.dropout, self.training), *graph).flatten(1))
        return self.layer2(drop(h, self.dropout, self.training), *graph).mean(dim=1)


def gat(seed: int = 0) -> ModelSpec:
    """Cora-sized GAT on a synthetic graph; see the module docstring."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(0)
    features = (torch.rand(2708, 1433, generator=g) < 0.0127).float()
    module = GAT(sbm_graph()).eval()
    return ModelSpec("gat", module, features, None, None, "GAT 2 layers (8x8 heads, 7 classes), 2708 nodes, 1433 features, synthetic SBM graph", batch_dim=None)
