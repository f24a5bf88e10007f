import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from simqos.nested import NestedNetwork, enumerate_routes, format_route, parse_route, route_accuracies
from simqos.sim.metrics import cluster_design_effect
from simqos.models.spec import IGNORE, Dataset
from simqos.nested.routes import is_monotone
from simqos.nested.scoring import Accuracy, score


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
    data = Dataset("hand", x, y, x, y, x, y)
    # level 0 keeps the two largest of 4 weights (2 and 1): identity-like -> predicts 0, 1, 0
    # level 1 keeps only the 2: always class 0 for x[...,0] > 0, tie -> argmax 0 otherwise
    accs = route_accuracies(net, data, [(0,), (1,)])
    assert [(a.correct, a.n, a.design_effect) for a in accs] == [(3, 3, 1.0), (2, 3, 1.0)]


def test_scores_skip_ignored_labels_and_count_tokens_per_sequence():
    logits = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])
    y = torch.tensor([[0, 0, IGNORE], [1, 0, 0]])
    hit, units = score(logits, y)
    assert hit.tolist() == [1, 2] and units.tolist() == [2, 3]


def test_a_sentence_is_a_cluster_of_tokens():
    """Tokens that stand or fall with their sentence carry less information than as many
    independent samples: the design effect widens the interval by about the sentence length."""
    right = np.array([10] * 60 + [0] * 40)  # 100 sentences of 10 tokens, all right or all wrong
    assert cluster_design_effect(right, np.full(100, 10)) == pytest.approx(10 * 100 / 99, rel=1e-9)
    independent = Accuracy(600, 1000)
    clustered = Accuracy(600, 1000, design_effect=cluster_design_effect(right, np.full(100, 10)))
    assert clustered.interval[1] - clustered.interval[0] > 3 * (independent.interval[1] - independent.interval[0])
    assert cluster_design_effect(np.array([1, 0, 1]), np.array([1, 1, 1])) == 1.0


def test_decisions_use_validation_accuracy_never_the_test_split(tmp_path):
    """Shuffle which route scored what on the test split (as shuffling its labels would): the
    clairvoyant and lookahead policies choose exactly the same routes, while the accuracy the
    records report follows the test split. (A hand-made bundle: a measured one's latencies vary
    with the machine's load, and with them whether the routes mix at all.)"""
    import numpy as np
    import pandas as pd

    from simqos.sim.inputs import sample_inputs
    from simqos.sim.plan import build_plan
    from simqos.sim.replication import run_policy
    from simqos.scenario import parse_scenario
    from bundles import scenario_dict, write_bundle

    rng = np.random.default_rng(0)
    samples = {("a", 0): list(rng.uniform(1.0, 3.0, 50)), ("b", 0): list(rng.uniform(1.0, 3.0, 50)),
               ("a", 1): list(rng.uniform(0.5, 1.5, 50)), ("b", 1): list(rng.uniform(0.5, 1.5, 50))}
    validation = {"0-0": 0.95, "0-1": 0.93, "1-0": 0.90, "1-1": 0.85}
    test = {"0-0": 0.94, "0-1": 0.92, "1-0": 0.91, "1-1": 0.86}
    shuffled_test = dict(zip(test, reversed(test.values())))  # every route gets another's score
    bundles = [write_bundle(tmp_path / name, samples, {"a": 0, "b": 1}, accuracy=acc, validation_accuracy=validation)
               for name, acc in (("original", test), ("shuffled", shuffled_test))]
    device = {"speed": {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 0.01}, {"speed": 0.5, "mean_dwell_s": 0.005}]}}
    workload = {"arrival": {"kind": "poisson", "rate_hz": 100}, "deadline": {"kind": "constant", "ms": 8.0}}
    chosen = []
    for bundle in bundles:
        plan = build_plan(parse_scenario(scenario_dict(bundle, requests=400, device=device, workload=workload,
                                                       policies=[{"kind": "clairvoyant"}, {"kind": "lookahead"}])))
        inputs = sample_inputs(plan, 0)
        chosen.append([run_policy(plan, inputs, i, 0) for i in range(2)])
    for original, after in zip(*chosen):
        pd.testing.assert_series_equal(original["route"], after["route"])
        assert original["route"].nunique() > 1  # the choice depended on accuracy at all
    assert not chosen[0][0]["accuracy"].equals(chosen[1][0]["accuracy"])
