"""Hypothesis strategies shared by the tests (one module, as attrs does)."""

from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def densities(draw, max_levels: int = 4, allow_dense: bool = True) -> list[float]:
    """Strictly decreasing kept-weight fractions in (0, 1], optionally starting with 1.0."""
    k = draw(st.integers(1, max_levels))
    values = draw(
        st.lists(st.floats(0.01, 0.95, allow_nan=False), min_size=k, max_size=k, unique_by=lambda v: round(v, 3))
    )
    values = sorted({round(v, 3) for v in values}, reverse=True)
    if allow_dense and draw(st.booleans()):
        values = [1.0] + values
    return values


@st.composite
def layer_cases(draw):
    """(module factory arguments, example input shape) for every prunable layer kind."""
    kind = draw(st.sampled_from(["linear", "conv1d", "conv2d", "lstm", "attention"]))
    if kind == "linear":
        i, o, b = draw(st.integers(1, 40)), draw(st.integers(1, 40)), draw(st.integers(1, 3))
        return kind, {"in_features": i, "out_features": o, "bias": draw(st.booleans())}, (b, i)
    if kind in ("conv1d", "conv2d"):
        c, o, k = draw(st.integers(1, 6)), draw(st.integers(1, 8)), draw(st.integers(1, 3))
        size = draw(st.integers(k, 9))
        spatial = (size,) if kind == "conv1d" else (size, draw(st.integers(k, 9)))
        args = {
            "in_channels": c,
            "out_channels": o,
            "kernel_size": k,
            "stride": draw(st.integers(1, 2)),
            "padding": draw(st.integers(0, k // 2)),
            "bias": draw(st.booleans()),
        }
        return kind, args, (draw(st.integers(1, 2)), c, *spatial)
    if kind == "lstm":
        i, h = draw(st.integers(1, 12)), draw(st.integers(1, 12))
        return kind, {"input_size": i, "hidden_size": h, "num_layers": draw(st.integers(1, 2))}, (3, 1, i)
    heads = draw(st.sampled_from([1, 2]))
    e = heads * draw(st.integers(1, 6))
    return kind, {"embed_dim": e, "num_heads": heads}, (4, 1, e)
