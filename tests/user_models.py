"""A user's own models, imported by the CLI tests as ``user_models:FACTORY``."""

from torch import nn


def plain_cnn():
    """A plain nn.Module: the CLI needs --input-shape for it."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))


NOT_A_FACTORY = 42


class _SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(32, 4, batch_first=True)
        self.ff = nn.Linear(32, 32)

    def forward(self, x):
        return self.ff(self.attn(x, x, x, need_weights=False)[0])


def attention_block():
    """Self-attention then a Linear: exercises the attention kernels."""
    return _SelfAttention()
