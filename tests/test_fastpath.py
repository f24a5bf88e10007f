"""The compiled fast path gives the SimPy reference's records bit for bit."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bundles import scenario_dict, write_bundle
from simqos.sim.inputs import sample_inputs
from simqos.sim.plan import build_plan
from simqos.sim.replication import run_policy
from simqos.scenario import parse_scenario


@pytest.fixture(scope="module")
def three_level(tmp_path_factory):
    rng = np.random.default_rng(1)
    names = {"a": 0, "b": 0, "c": 1, "d": 2}
    samples = {(n, k): list(rng.uniform(0.3, 2.0, 40) / (k + 1)) for n in names for k in range(3)}
    accuracy = {f"{x}-{y}-{z}": float(rng.uniform(0.8, 0.99)) for x in range(3) for y in range(3) for z in range(3)}
    return write_bundle(tmp_path_factory.mktemp("fp") / "three", samples, names,
                        level_bytes=[3_000_000, 2_000_000, 1_000_000], accuracy=accuracy,
                        idle_factor={0.0: 1.0, 0.5: 1.1, 2.0: 1.7, 10.0: 2.5})  # idle slowdown on: both engines apply it


ARRIVALS = st.one_of(
    st.builds(lambda r: {"kind": "poisson", "rate_hz": r}, st.floats(50, 1500)),
    st.builds(lambda f, j: {"kind": "periodic", "fps": f, "jitter_ms": j}, st.floats(50, 800), st.floats(0, 5)),
    st.builds(lambda r: {"kind": "bursty", "states": [{"rate_hz": 30, "mean_dwell_s": 0.2}, {"rate_hz": r, "mean_dwell_s": 0.05}]},
              st.floats(200, 3000)),
)
POLICIES = [
    {"kind": "static", "level": 0},
    {"kind": "static", "level": 2},
    {"kind": "greedy", "quantile": 0.7},
    {"kind": "deadline_aware"},
    {"kind": "deadline_aware", "back_up": True, "count_queue": True, "slack_ms": 0.3, "label": "da-all"},
    {"kind": "dp", "grid": 24, "samples": 32},
    {"kind": "queue_dp", "grid": 12, "queue_grid": 3, "max_queue": 2, "samples": 16, "quantiles": 2},
    {"kind": "clairvoyant"},
    {"kind": "clairvoyant", "margin_ms": 1.0, "label": "clairvoyant-margin"},
]


def fluctuating(slow: float, pressure_mb: float, noisy: bool = False, slice_ms: float = 0.0, wake_wait: tuple = ()) -> dict:
    """A device whose speed drops to ``slow`` and whose memory to ``pressure_mb`` in spells;
    ``noisy``: with a noise of wander and stalls multiplied on; ``slice_ms``: its time-slicing,
    ``wake_wait`` a woken request's wait for the running competitor's slice."""
    device = {
        "speed": {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 0.02}, {"speed": slow, "mean_dwell_s": 0.01}]},
        "memory": {"kind": "markov", "states": [{"memory_mb": 10, "mean_dwell_s": 0.1}, {"memory_mb": pressure_mb, "mean_dwell_s": 0.05}]},
        "storage_bandwidth_mb_s": 50,
        "slice_ms": slice_ms,
        "wake_wait": list(wake_wait) if slice_ms else [],
    }
    if noisy:
        device["noise"] = {"kind": "markov", "states": [{"speed": 1.1, "mean_dwell_s": 0.03}, {"speed": 0.8, "mean_dwell_s": 0.02},
                                                        {"speed": 0.01, "mean_dwell_s": 0.004}]}  # fmt: skip
    return device


def queued(arrival: dict, deadline_ms: float, capacity: int | None, late: str) -> dict:
    """A workload of ``arrival`` with a constant deadline and the queue rules given."""
    return {"arrival": arrival, "deadline": {"kind": "constant", "ms": deadline_ms}, "queue": {"capacity": capacity, "late": late}}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    arrival=ARRIVALS,
    deadline_ms=st.floats(0.5, 10),
    capacity=st.one_of(st.none(), st.integers(0, 8)),
    late=st.sampled_from(["run", "drop"]),
    slow=st.floats(0.05, 1.0),
    pressure_mb=st.floats(0.0, 3.5),
    noisy=st.booleans(),
    slice_ms=st.sampled_from([0.0, 0.3, 0.7, 3.0]),
    wake_wait=st.sampled_from([(), (1.0,), (0.6, 0.2)]),
)
def test_fast_path_equals_simpy(three_level, seed, arrival, deadline_ms, capacity, late, slow, pressure_mb, noisy, slice_ms, wake_wait):
    device, workload = fluctuating(slow, pressure_mb, noisy, slice_ms, wake_wait), queued(arrival, deadline_ms, capacity, late)
    plan = build_plan(parse_scenario(scenario_dict(three_level, seed=seed, requests=400, device=device, workload=workload, policies=POLICIES)))
    inputs = sample_inputs(plan, 0)
    for p in range(len(POLICIES)):
        reference = run_policy(plan, inputs, p, 0, engine="simpy")
        fast = run_policy(plan, inputs, p, 0, engine="auto")
        pd.testing.assert_frame_equal(fast, reference, check_exact=True)
