import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from simqos.nested import NestedNetwork, enumerate_routes, format_route, parse_route, route_accuracies
from simqos.nested.routes import is_monotone


@given(st.integers(1, 8), st.integers(1, 4))
def test_route_counts(segments, levels):
    routes, complete = enumerate_routes(segments, levels, max_routes=256)
    if levels**segments <= 256:
        assert complete and len(routes) == levels**segments
    else:
        assert not complete and len(routes) == math.comb(segments + levels - 1, levels - 1)
        assert all(is_monotone(r) for r in routes)
    assert len(set(routes)) == len(routes)


def test_route_spelling_round_trips():
    assert format_route((0, 1, 1)) == "0-1-1"
    assert parse_route("0-1-1") == (0, 1, 1)


def test_route_accuracy_counts_by_hand():
    # a 2-class linear model whose level 0 is right on the first sample only
    layer = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
    net = NestedNetwork.from_magnitude(layer, [0.5, 0.25], torch.zeros(1, 2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([0, 1, 0])
    # level 0 keeps the two largest of 4 weights (2 and 1): identity-like -> predicts 0, 1, 0
    # level 1 keeps only the 2: always class 0 for x[...,0] > 0, tie -> argmax 0 otherwise
    accs = route_accuracies(net, x, y, [(0,), (1,)])
    assert [(a.correct, a.n) for a in accs] == [(3, 3), (2, 3)]
