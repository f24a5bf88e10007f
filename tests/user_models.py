"""A user's own models, imported by the CLI tests as ``user_models:FACTORY``."""

from torch import nn


def plain_cnn():
    """A plain nn.Module: the CLI needs --input-shape for it."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))


NOT_A_FACTORY = 42
