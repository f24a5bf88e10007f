"""Batch-norm statistics per route prefix (simqos.nested.calibration): by hand on a two-layer
network, and end to end — a route normalised by statistics calibrated on a batch computes what
batch statistics would on that batch, segment by segment, whatever the route."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from simqos.nested import NestedNetwork, format_route, parse_route
from simqos.nested.calibration import CALIBRATION_BATCH, calibrate_norms
from simqos.nested.network import find_norms
from simqos.nested.routes import monotone_routes


def _net(n_segments: int, width: int = 6, seed: int = 0) -> NestedNetwork:
    """Linear -> BatchNorm -> ReLU, ``n_segments`` times, then a linear head; a reroute point
    after each hidden linear layer but the last (the head runs in the last segment)."""
    torch.manual_seed(seed)
    layers = []
    for i in range(n_segments):
        layers += [nn.Linear(4 if i == 0 else width, width), nn.BatchNorm1d(width), nn.ReLU()]
    module = nn.Sequential(*layers, nn.Linear(width, 3)).eval()
    x = torch.zeros(2, 4)
    net = NestedNetwork.from_magnitude(module, (0.6, 0.3), x, reroute_after=[str(3 * i) for i in range(n_segments - 1)])
    net.norm_segments = find_norms(module, x, net.layers)
    return net


def test_a_prefix_statistics_are_the_average_of_its_batch_statistics_by_hand():
    net = _net(1)
    x = torch.randn(2 * CALIBRATION_BATCH + 7, 4, generator=torch.Generator().manual_seed(1))  # the 7 are not used
    calibrate_norms(net, x, [(0,), (1,)])
    assert net.norm_segments == {"1": 0}
    for level in (0, 1):
        h = x[: 2 * CALIBRATION_BATCH] @ net.masked_weights((level,))["0.weight"].T + net.module[0].bias
        halves = h.detach().reshape(2, CALIBRATION_BATCH, -1)
        stats = net.norm_stats[(level,)]
        torch.testing.assert_close(stats["1.running_mean"], halves.mean(dim=1).mean(dim=0))
        torch.testing.assert_close(stats["1.running_var"], halves.var(dim=1, unbiased=True).mean(dim=0))
    assert not torch.allclose(net.norm_stats[(0,)]["1.running_mean"], net.norm_stats[(1,)]["1.running_mean"])


@pytest.mark.parametrize("route", [(0, 0, 0), (0, 1, 1), (0, 0, 1), (1, 1, 1)])
def test_a_calibrated_route_normalises_as_its_own_batch_would(route):
    """Calibrated on one batch, every segment of a route is normalised by that batch's
    statistics: its eval output is the batch-statistics output (up to the n/(n-1) of the
    unbiased running variance). With each level's own statistics instead, a mixed route is not."""
    net = _net(3)
    x = torch.randn(CALIBRATION_BATCH, 4, generator=torch.Generator().manual_seed(2)) * 3 + 1
    calibrate_norms(net, x, monotone_routes(3, 2))
    with torch.no_grad():
        eval_out = net.forward(x, route)
        net.module.train()
        batch_out = torch.func.functional_call(net.module, {k: v.clone() for k, v in net.route_tensors(route).items()}, (x,))
        net.module.eval()
    torch.testing.assert_close(eval_out, batch_out, rtol=0, atol=5e-3 * float(batch_out.abs().max()))
    assert set(net.norm_stats) == {r[: s + 1] for r in monotone_routes(3, 2) for s in range(3)}


def test_a_mixed_route_on_its_levels_own_statistics_is_off_scale():
    """The counterpart of the test above: calibrated on the uniform routes only, the mixed
    route's tail is normalised by its level's statistics, not those its head produces."""
    net = _net(3)
    x = torch.randn(CALIBRATION_BATCH, 4, generator=torch.Generator().manual_seed(2)) * 3 + 1
    calibrate_norms(net, x, [(0, 0, 0), (1, 1, 1)])
    with torch.no_grad():
        eval_out = net.forward(x, (0, 1, 1))
        net.module.train()
        batch_out = torch.func.functional_call(net.module, {k: v.clone() for k, v in net.route_tensors((0, 1, 1)).items()}, (x,))
        net.module.eval()
    assert float((eval_out - batch_out).abs().max()) > 5e-2 * float(batch_out.abs().max())


def test_an_uncalibrated_prefix_falls_back_to_its_level_statistics():
    net = _net(2)
    x = torch.randn(CALIBRATION_BATCH, 4, generator=torch.Generator().manual_seed(3))
    calibrate_norms(net, x, monotone_routes(2, 2))
    back = net.norm_buffers((1, 0))  # not monotone: never calibrated
    for key in ("4.running_mean", "4.running_var"):
        assert torch.equal(back[key], net.norm_stats[(0, 0)][key])
    for key in ("1.running_mean", "1.running_var"):
        assert torch.equal(back[key], net.norm_stats[(1,)][key])


def test_prefix_statistics_survive_a_checkpoint_round_trip():
    net = _net(2)
    calibrate_norms(net, torch.randn(CALIBRATION_BATCH, 4), monotone_routes(2, 2))
    state = net.state()
    assert {parse_route(k) for k in state["prefix_norm_stats"]} == set(net.norm_stats)
    again = NestedNetwork.from_state(_net(2, seed=5).module, state)
    for prefix, stats in net.norm_stats.items():
        assert all(torch.equal(stats[k], again.norm_stats[prefix][k]) for k in stats), format_route(prefix)


def test_monotone_routes_of_a_trained_resnet_lie_between_their_levels():
    """The property the simulator assumes: a request that switches to the sparser level
    mid-inference is about as accurate as its two levels. On a tiny ResNet-1D, with each level's
    own statistics a route that switches after its second segment falls below chance; with the
    statistics calibrated per route prefix, every monotone route's interval meets the span of its
    levels' intervals."""
    from simqos.models import build_model
    from simqos.nested import TrainConfig, train_nested
    from simqos.nested.routes import route_accuracies

    spec = build_model("resnet1d", width=12, samples=2000)
    config = TrainConfig(epochs_dense=6, epochs_sparsest=4, epochs_grow=4, lr_dense=3e-3, lr_sparse=3e-3,
                         keep_dense=("conv1", "fc"), lr_schedule="cosine", calibration_samples=0)
    net = train_nested(spec, (0.3, 0.1), config)
    routes = monotone_routes(net.n_segments, 2)

    def between(accuracies) -> list[bool]:
        by_route = {a.route: a for a in accuracies}
        ends = [by_route[net.uniform_route(k)] for k in (0, 1)]
        low, high = min(e.interval[0] for e in ends), max(e.interval[1] for e in ends)
        return [a.interval[1] >= low and a.interval[0] <= high for a in accuracies]

    uncalibrated = route_accuracies(net, spec.dataset, routes, "test")
    # well below the sparser level: below 0.2 when written (c5d2777); 0.39 against levels of 0.72 and 0.57 with
    # the packages of 2026-12-07 (the same torch), so the margin, not the depth, is what is held
    sparser = min(a.accuracy for a in uncalibrated if a.route in (net.uniform_route(0), net.uniform_route(1)))
    assert not all(between(uncalibrated)) and min(a.accuracy for a in uncalibrated) < sparser - 0.1
    calibrate_norms(net, spec.dataset.x_train, routes)
    calibrated = route_accuracies(net, spec.dataset, routes, "test")
    assert all(between(calibrated)), [(format_route(a.route), round(a.accuracy, 3)) for a in calibrated]
