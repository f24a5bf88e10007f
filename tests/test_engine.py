"""The SimPy engine against hand computation, an independent recursion, queueing theory and
properties."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bundles import scenario_dict, write_bundle
from simqos.sim.execution import run_plan
from simqos.sim.inputs import sample_inputs
from simqos.sim.plan import build_plan
from simqos.sim.replication import run_policy
from simqos.scenario import parse_scenario

@pytest.fixture(scope="module")
def deterministic(tmp_path_factory):
    """One layer, one level, always exactly 4 ms."""
    return write_bundle(tmp_path_factory.mktemp("b") / "det", {("x", 0): [4.0]}, {"x": 0})


def _plan(profile, **overrides):
    """Plans run on the SimPy reference unless ``engine`` says otherwise; the compiled fast
    path is held to it record for record in test_fastpath.py."""
    return build_plan(parse_scenario(scenario_dict(profile, **{"engine": "simpy", **overrides})))


def _lindley(inputs, level):
    """Independent recursion: start = max(arrival, previous finish); exact work integration."""
    start = np.empty(len(inputs.arrivals_s))
    finish = np.empty_like(start)
    free = 0.0
    for i, a in enumerate(inputs.arrivals_s):
        t = max(a, free)
        start[i] = t
        for seg in range(inputs.work_ms.shape[2]):
            t = inputs.speed.finish_time_s(t, inputs.work_ms[i, level, seg])
        finish[i] = free = t
    return start, finish


@pytest.mark.parametrize("speed", [
    {"kind": "constant", "speed": 1.0},
    {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 0.05}, {"speed": 0.3, "mean_dwell_s": 0.02}]},
])
@pytest.mark.parametrize("level", [0, 1])
def test_static_policy_agrees_exactly_with_a_lindley_recursion(two_level, speed, level):
    plan = _plan(two_level, requests=3000, device={"speed": speed},
                 workload={"arrival": {"kind": "poisson", "rate_hz": 300}, "deadline": {"kind": "constant", "ms": 10}},
                 policies=[{"kind": "static", "level": level}])
    inputs = sample_inputs(plan, 0)
    records = run_policy(plan, inputs, 0, 0)
    start, finish = _lindley(inputs, level)
    np.testing.assert_allclose(records["start_s"], start, rtol=0, atol=1e-12)
    np.testing.assert_allclose(records["finish_s"], finish, rtol=0, atol=1e-12)
    assert (records["reroutes"] == 0).all()


def test_noise_multiplies_the_speed_and_leaves_every_other_input_as_it_was(two_level):
    """device.noise: a constant noise of 0.5 on speed 1 serves as speed 0.5 does, record for
    record; a Markov noise draws from its own stream, so the arrivals, deadlines, latency
    draws and the speed process's own jumps stay those of the scenario without it."""
    markov = {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 0.05}, {"speed": 0.3, "mean_dwell_s": 0.02}]}
    common = {"requests": 2000, "policies": [{"kind": "static", "level": 0}, {"kind": "deadline_aware"}]}
    halved = run_plan(_plan(two_level, device={"speed": {"kind": "constant", "speed": 1.0},
                                               "noise": {"kind": "constant", "speed": 0.5}}, **common))  # fmt: skip
    slow = run_plan(_plan(two_level, device={"speed": {"kind": "constant", "speed": 0.5}}, **common))
    pd.testing.assert_frame_equal(halved, slow, check_exact=True)
    noise = {"kind": "markov", "states": [{"speed": 1.2, "mean_dwell_s": 0.01}, {"speed": 0.05, "mean_dwell_s": 0.002}]}
    quiet, noisy = (sample_inputs(_plan(two_level, device={"speed": markov, **extra}, **common), 0) for extra in ({}, {"noise": noise}))
    for field in ("arrivals_s", "deadlines_s", "work_ms"):
        np.testing.assert_array_equal(getattr(quiet, field), getattr(noisy, field))
    speed, both = quiet.speed.trace, noisy.speed.trace
    assert len(both.times_s) > len(speed.times_s)
    assert set(speed.times_s[speed.times_s <= both.times_s[-1]]) <= set(both.times_s)
    at = np.linspace(0.0, 5.0, 2001)
    ratio = both.at(at) / speed.at(at)
    assert set(np.round(ratio, 12)) == {1.2, 0.05}


@pytest.mark.parametrize("speed, noise, slice_ms, woken_ms", [
    (0.5, None, 1.5, 4.0 + 2 * 1.5),  # a whole slice, then two slices each after a competitor's turn
    (0.5, 0.8, 1.5, (4.0 + 2 * 1.5) / 0.8),  # the noise slows the whole core; the share is the speed alone
    (0.5, None, 10.0, 4.0),  # a slice longer than the request: it never waits a turn
    (1.0, 0.5, 1.5, 8.0),  # a slow machine, no competitors: no slicing
    (0.5, None, 0.0, 8.0),  # no slice: a speed factor alone
])
def test_a_woken_request_starts_with_a_whole_slice(deterministic, speed, noise, slice_ms, woken_ms):
    """The first of the requests below finds the device idle."""
    device = {"speed": {"kind": "constant", "speed": speed}, "slice_ms": slice_ms}
    if noise is not None:
        device["noise"] = {"kind": "constant", "speed": noise}
    for engine in ("simpy", "auto"):
        plan = _plan(deterministic, requests=5, device=device, engine=engine,
                     workload={"arrival": {"kind": "periodic", "fps": 200}, "deadline": {"kind": "constant", "ms": 1e6}})
        records = run_policy(plan, sample_inputs(plan, 0), 0, 0)
        assert (records["finish_s"][0] - records["start_s"][0]) * 1e3 == pytest.approx(woken_ms, rel=1e-9)


@pytest.mark.parametrize("wake_wait, speed, waits", [([1.0], 0.5, 1.0), ([0.5], 0.5, 0.5), ([0.8, 0.0], 0.25, 0.0),
                                                    ([0.8, 0.4], 0.25, 0.4), ([0.8], 1.0, 0.0)])
def test_a_woken_request_first_waits_for_the_running_competitors_slice(deterministic, wake_wait, speed, waits):
    """4 ms of work every 20 ms: every request wakes the server. It waits the rest of the slice
    cycle at its start times the fraction for its number of competitors (one at half the core,
    three at a quarter; none at the whole core), then runs as a woken request does."""
    for engine in ("simpy", "auto"):
        times = []
        for wake in (wake_wait, []):
            device = {"speed": {"kind": "constant", "speed": speed}, "slice_ms": 1.5, "wake_wait": wake}
            plan = _plan(deterministic, requests=6, device=device, engine=engine,
                         workload={"arrival": {"kind": "periodic", "fps": 50}, "deadline": {"kind": "constant", "ms": 1e6}})
            records = run_policy(plan, sample_inputs(plan, 0), 0, 0)
            times.append(((records["finish_s"] - records["start_s"]) * 1e3).to_numpy())
            start_ms = records["start_s"].to_numpy() * 1e3
        assert (records["start_s"] == records["arrival_s"]).all()  # every one woken
        rest_ms = (1.0 - (start_ms / 1.5) % 1.0) * 1.5
        np.testing.assert_allclose(times[0] - times[1], waits * rest_ms, rtol=1e-9, atol=1e-12)


def test_queued_requests_continue_the_slice_the_one_before_left(deterministic):
    """4 ms of work every 5 ms at half the core, slices of 1.5 ms: the first request finds the
    device idle and runs a whole slice, then two more after a competitor's 1.5 ms turn each,
    7 ms, leaving 0.5 ms of its last; the next (queued) runs that 0.5, then three slices after
    three turns, 8.5 ms, leaving 1 ms; the next 1, two turns, 7 ms, ending at a slice's end; the
    next waits a turn first: three turns, 8.5 ms, leaving 0.5 — and so on, 8 ms on average, the
    speed factor's."""
    device = {"speed": {"kind": "constant", "speed": 0.5}, "slice_ms": 1.5}
    for engine in ("simpy", "auto"):
        plan = _plan(deterministic, requests=10, device=device, engine=engine,
                     workload={"arrival": {"kind": "periodic", "fps": 200}, "deadline": {"kind": "constant", "ms": 1e6}})
        records = run_policy(plan, sample_inputs(plan, 0), 0, 0)
        service_ms = ((records["finish_s"] - records["start_s"]) * 1e3).to_numpy()
        np.testing.assert_allclose(service_ms, [7.0, 8.5, 7.0, 8.5, 8.5, 7.0, 8.5, 8.5, 7.0, 8.5], rtol=1e-9)


def _mean_wait_ci(profile, rate_hz, replications=8, requests=20000):
    plan = _plan(profile, requests=requests, replications=replications, warmup_requests=1000,
                 workload={"arrival": {"kind": "poisson", "rate_hz": rate_hz}, "deadline": {"kind": "constant", "ms": 1e6}})
    r = run_plan(plan)
    r = r[~r["warmup"]]
    waits = r.groupby("replication").apply(lambda g: (g["start_s"] - g["arrival_s"]).mean() * 1e3)
    half = 2.365 * waits.std(ddof=1) / math.sqrt(len(waits))  # t(0.975, 7)
    return waits.mean(), half


def test_md1_mean_wait_matches_pollaczek_khinchine(deterministic):
    rate, service_ms = 150.0, 4.0
    rho = rate * service_ms / 1e3
    theory = rho * service_ms / (2 * (1 - rho))  # M/D/1: W = rho S / (2 (1 - rho))
    mean, half = _mean_wait_ci(deterministic, rate)
    assert abs(mean - theory) <= max(half, 0.02 * theory), (mean, half, theory)


def test_mg1_mean_wait_with_profile_samples(two_level):
    rate = 150.0
    plan = _plan(two_level)
    assert plan.model.glue_ms == pytest.approx([0, 0], abs=1e-9)
    samples = [np.asarray(plan.model.sorted_samples_ms[j][0]) for j in range(2)]
    # service = independent draws of layer a and b at level 0
    es = sum(s.mean() for s in samples)
    es2 = sum((s**2).mean() for s in samples) + 2 * samples[0].mean() * samples[1].mean()
    rho = rate * es / 1e3
    theory = rate / 1e3 * es2 / (2 * (1 - rho))  # P-K: W = lambda E[S^2] / (2 (1 - rho))
    mean, half = _mean_wait_ci(two_level, rate)
    assert abs(mean - theory) <= max(half, 0.02 * theory), (mean, half, theory)


POLICIES = [
    {"kind": "static", "level": 0},
    {"kind": "static", "level": 1},
    {"kind": "greedy"},
    {"kind": "deadline_aware", "quantile": 0.9},
    {"kind": "deadline_aware", "back_up": True, "count_queue": True, "label": "da2"},
    {"kind": "clairvoyant"},
]
FLUCTUATING = {"speed": {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 0.02}, {"speed": 0.25, "mean_dwell_s": 0.01}]}}


def test_same_seed_same_records_and_policies_do_not_interfere(two_level):
    full = run_plan(_plan(two_level, policies=POLICIES, device=FLUCTUATING, replications=2))
    again = run_plan(_plan(two_level, policies=POLICIES, device=FLUCTUATING, replications=2))
    pd.testing.assert_frame_equal(full, again)
    alone = run_plan(_plan(two_level, policies=[POLICIES[3]], device=FLUCTUATING, replications=2))
    mine = full[full["policy"] == alone["policy"].iloc[0]].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone.astype({"policy": str}), mine.astype({"policy": str}))  # categories: each plan's labels
    static = full[full["policy"].str.startswith("static")]
    assert (static["reroutes"] == 0).all()
    assert set(full.loc[full["policy"] == "static L1", "route"]) == {"1-1"}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), deadline_ms=st.floats(1.0, 8.0), slow=st.floats(0.2, 1.0))
def test_isolated_requests(two_level, seed, deadline_ms, slow):
    """Requests far apart never queue: each policy's request starts at its arrival.

    - the clairvoyant's accuracy-at-deadline is never below any policy's on the same request;
    - on a constant device, deadline_aware meets the deadline whenever the all-sparsest route
      would (its prediction is a quantile, so only when that route meets it with the
      prediction's margin: we use the 0.999 quantile, an upper bound of the samples).
    """
    device = {"speed": {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 0.003}, {"speed": slow, "mean_dwell_s": 0.002}]}}
    workload = {"arrival": {"kind": "periodic", "fps": 5}, "deadline": {"kind": "constant", "ms": deadline_ms}}
    policies = [*POLICIES, {"kind": "deadline_aware", "quantile": 0.999, "label": "da-max"}]
    r = run_plan(_plan(two_level, seed=seed, requests=200, workload=workload, device=device, policies=policies))
    assert (r["start_s"] == r["arrival_s"]).all()
    score = r.assign(score=np.where(r["outcome"] == "met", r["accuracy"], 0.0)).pivot(index="request", columns="policy", values="score")
    assert (score["clairvoyant"].to_numpy()[:, None] >= score.to_numpy() - 1e-12).all()

    constant = run_plan(_plan(two_level, seed=seed, requests=200, workload=workload, policies=policies))
    wide = constant.pivot(index="request", columns="policy", values="outcome")
    assert not ((wide["static L1"] == "met") & (wide["da-max"] != "met")).any()


def test_memory_pressure_makes_static_wait_and_rerouting_go_sparser(two_level):
    # level bytes 1000 / 500 (bundle default); memory 0.0008 MB = 800 B: only level 1 fits
    device = {"memory": {"kind": "constant", "memory_mb": 0.0008}}
    r = run_plan(_plan(two_level, requests=200, device=device, policies=[POLICIES[0], POLICIES[3]]))
    static = r[r["policy"] == "static L0"]
    assert (static["outcome"] == "dropped").all()  # level 0 never becomes resident
    da = r[r["policy"] != "static L0"]
    assert set(da["route"]) == {"1-1"}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), level=st.integers(0, 1), rate=st.floats(50, 600), dwell=st.floats(0.001, 0.1))
def test_static_never_reroutes(two_level, seed, level, rate, dwell):
    device = {"speed": {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": dwell}, {"speed": 0.2, "mean_dwell_s": dwell}]},
              "memory": {"kind": "markov", "states": [{"memory_mb": 1.0, "mean_dwell_s": 0.05}, {"memory_mb": 0.0007, "mean_dwell_s": 0.01}]}}
    workload = {"arrival": {"kind": "poisson", "rate_hz": rate}, "deadline": {"kind": "constant", "ms": 5}}
    r = run_plan(_plan(two_level, seed=seed, requests=300, device=device, workload=workload,
                       policies=[{"kind": "static", "level": level}]))
    served = r[r["outcome"] != "dropped"]
    assert (served["reroutes"] == 0).all()
    assert set(served["route"]) <= {f"{level}-{level}"}


def test_replications_in_parallel_give_the_same_records(two_level):
    plan = _plan(two_level, replications=3, requests=500, policies=POLICIES[:3], device=FLUCTUATING, engine="auto")
    pd.testing.assert_frame_equal(run_plan(plan, workers=2), run_plan(plan))


@pytest.mark.parametrize("engine", ["simpy", "auto"])
def test_a_charged_decision_adds_its_time_to_every_segment_on_both_engines(two_level, engine):
    """decision_ms: each of a request's two decisions (start, one reroute point) costs 0.3 ms
    of device work before its segment, scaled by the speed: on a markov-speed device, the
    Lindley recursion with 0.3 ms added to each segment's work."""
    speed = {"kind": "markov", "states": [{"speed": 1.0, "mean_dwell_s": 0.05}, {"speed": 0.3, "mean_dwell_s": 0.02}]}
    plan = _plan(two_level, requests=2000, device={"speed": speed}, engine=engine,
                 workload={"arrival": {"kind": "poisson", "rate_hz": 200}, "deadline": {"kind": "constant", "ms": 10}},
                 policies=[{"kind": "static", "level": 1, "decision_ms": 0.3}])
    inputs = sample_inputs(plan, 0)
    records = run_policy(plan, inputs, 0, 0)
    charged = dataclasses.replace(inputs, work_ms=inputs.work_ms + 0.3)
    start, finish = _lindley(charged, 1)
    np.testing.assert_allclose(records["finish_s"], finish, rtol=0, atol=1e-12)
    free = run_policy(_plan(two_level, requests=2000, device={"speed": speed}, engine=engine,
                            workload={"arrival": {"kind": "poisson", "rate_hz": 200}, "deadline": {"kind": "constant", "ms": 10}},
                            policies=[{"kind": "static", "level": 1}]), inputs, 0, 0)
    assert (records["latency_ms"] > free["latency_ms"] + 0.6 - 1e-9).mean() > 0.5  # two decisions, 0.6 ms at least


def test_a_measured_decision_time_is_timed_on_this_machine_and_charged(two_level):
    from simqos.sim.simpy_model import measure_decision_ms

    plan = _plan(two_level, requests=300, policies=[{"kind": "lookahead", "decision_ms": "measured"}, {"kind": "static", "level": 0}])
    charged = plan.policy_factories[0]().decision_ms
    assert 0.0 < charged < 50.0  # a decision takes microseconds here, not nothing and not a request's time
    assert plan.policy_factories[1]().decision_ms == 0.0
    assert 0.0 < measure_decision_ms(plan, 1) < 50.0
