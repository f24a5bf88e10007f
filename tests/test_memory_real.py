"""Memory pressure played for real (simqos.validate.memory): the stored extra non-zeros build
each level exactly, evictions act at the next reroute point, reloads take the paced time the
simulator's model gives them, sparsest first, and a level that cannot return is reported."""

import time

import numpy as np
import pytest
import torch
from torch import nn

from simqos.nested.network import NestedNetwork
from simqos.sim.device import fits
from simqos.validate.memory import RealResidency, WeightStore
from simqos.validate.real import real_model


@pytest.fixture()
def model(tmp_path):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    x = torch.randn(1, 16)
    net = NestedNetwork.from_magnitude(module, (0.6, 0.3, 0.1), x)
    names = {(layer.name, k): kernel for layer in net.layers for k, kernel in enumerate(("dense", "scipy_csr", "torch_csr"))}
    real = real_model(net, names, x)
    expected = [_output(real, x, k).clone() for k in range(net.n_levels)]  # every level built from the network
    return net, real, x, expected, tmp_path


def _output(real, x, level):
    real.router.levels = []
    real.router.decide = lambda _segment: level
    with torch.no_grad():
        return real.model(x)


def test_fits_is_the_least_sparse_level_in_memory():
    sizes = np.array([3.0, 2.0, 0.5])
    assert [fits(sizes, mb) for mb in (4, 3, 2.5, 2, 1, 0.5, 0.1)] == [0, 0, 1, 1, 2, 2, 3]


def test_evicted_levels_come_back_as_they_were_at_the_paced_time(model):
    net, real, x, expected, folder = model
    sizes_mb = np.array([3.0, 2.0, 1.0])  # each level adds 1 MB: 50 ms each at 20 MB/s
    residency = RealResidency(real, net, WeightStore(net, folder), sizes_mb * 1e6, 20.0, cores=set())
    residency.reset(0.5)  # nothing fits: every level evicted
    assert residency.sync() == 3 and all(k is None for s in real.switches for k in s.kernels)
    t0 = time.perf_counter()
    with residency.play([0.0, 0.02], [0.5, 5.0], t0, 10.0):
        assert residency.wait_for(0)
        took_s = time.perf_counter() - t0 - 0.02
    assert 0.15 <= took_s < 0.5  # three levels of 50 ms each, read in turn
    reloads = [(event, level) for _, event, level, _ in residency.log]
    assert reloads == [("reloaded", 2), ("reloaded", 1), ("reloaded", 0)]  # sparsest first
    assert all(read_ms >= 49 for _, _, _, read_ms in residency.log)
    assert residency.sync() == 0
    for level in range(3):  # built from the stored non-zeros: the same model at every level as from the network
        torch.testing.assert_close(_output(real, x, level), expected[level])


def test_an_eviction_acts_at_once_and_a_level_that_cannot_return_is_reported(model):
    net, real, x, expected, folder = model
    sizes_mb = np.array([3.0, 2.0, 1.0])
    residency = RealResidency(real, net, WeightStore(net, folder), sizes_mb * 1e6, 20.0, cores=set())
    residency.reset(5.0)
    assert residency.sync() == 0
    t0 = time.perf_counter()
    with residency.play([0.0, 0.01], [5.0, 1.5], t0, 10.0):
        while residency.floor == 0 and time.perf_counter() < t0 + 5:  # the change, 10 ms in
            time.sleep(0.005)
        assert residency.sync() == 2  # only the sparsest fits in 1.5 MB
        assert all(s.kernels[0] is None and s.kernels[1] is None and s.kernels[2] is not None for s in real.switches)
        torch.testing.assert_close(_output(real, x, 2), expected[2])
        assert not residency.wait_for(1)  # the schedule has ended in 1.5 MB: level 1 will not return


def test_a_reload_cut_short_by_the_next_change_is_abandoned(model):
    net, real, x, expected, folder = model
    residency = RealResidency(real, net, WeightStore(net, folder), np.array([3.0, 2.0, 1.0]) * 1e6, 20.0, cores=set())
    residency.reset(1.5)
    t0 = time.perf_counter()
    with residency.play([0.0, 0.01, 0.04, 0.06], [1.5, 5.0, 1.5, 5.0], t0, 10.0):  # 30 ms of room, 50 ms needed
        assert residency.wait_for(0)
        took_s = time.perf_counter() - t0
    assert took_s >= 0.06 + 0.1  # level 1 started over at 60 ms, then level 0: 50 ms each
    assert [level for _, event, level, _ in residency.log if event == "reloaded"] == [1, 0]
