"""A replication drawn and served in chunks is the replication drawn and served at once:
arrivals, records and tallies do not depend on the chunk sizes."""

from unittest import mock

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bundles import scenario_dict
from simqos.sim import replication
from simqos.sim.device import DeviceWindow, MarkovProcess, PeriodicProcess, Residency, SpeedTrace, markov_trace, periodic_trace, resident_trace
from simqos.sim.inputs import sample_inputs
from simqos.sim.plan import build_plan
from simqos.sim.replication import KeptRecords, plan_tallies, run_policy, streamed_replication
from simqos.scenario import parse_scenario
from simqos.sim.workload import ArrivalStream

from test_fastpath import ARRIVALS, POLICIES, fluctuating, queued, three_level  # noqa: F401 (a fixture)

JITTERY = st.builds(lambda f, j: {"kind": "periodic", "fps": f, "jitter_ms": j}, st.floats(50, 800), st.floats(5, 40))
"""Frames whose jitter spans several periods: a later frame may arrive before an earlier one."""


def _chunks(draw_sizes, stream: ArrivalStream) -> np.ndarray:
    parts = []
    for size in draw_sizes:
        parts.append(stream.take(size))
    while len(part := stream.take(97)):
        parts.append(part)
    return np.concatenate(parts)


@settings(max_examples=60, deadline=None)
@given(arrival=st.one_of(ARRIVALS, JITTERY), seed=st.integers(0, 2**32 - 1), sizes=st.lists(st.integers(0, 700), max_size=8),
       duration=st.booleans())  # fmt: skip
def test_arrivals_do_not_depend_on_the_chunks(arrival, seed, sizes, duration):
    spec = parse_scenario(scenario_dict("p", workload={"arrival": arrival, "deadline": {"kind": "constant", "ms": 5}})).workload.arrival
    ends = {"until_s": 3.0} if duration else {"requests": 1500}

    def stream():
        return ArrivalStream(spec, np.random.default_rng(seed), **ends)

    at_once = stream().take(10**9)
    assert np.array_equal(_chunks(sizes, stream()), at_once)
    assert (np.diff(at_once) >= 0).all() and (len(at_once) == 1500 or duration)
    if duration:
        assert at_once[-1] < 3.0 and stream().exhausted is False


def test_jittered_frames_are_sorted_across_chunks():
    """Frame k at k / fps plus its jitter, all 5,000 sorted together, however they are drawn."""
    spec = parse_scenario(scenario_dict("p", workload={"arrival": {"kind": "periodic", "fps": 100, "jitter_ms": 35},
                                                       "deadline": {"kind": "constant", "ms": 5}})).workload.arrival  # fmt: skip
    expected = np.sort(np.arange(1, 5001) / 100 + np.random.default_rng(0).uniform(0.0, 0.035, 5000))
    stream = ArrivalStream(spec, np.random.default_rng(0), requests=5000)
    assert np.array_equal(np.concatenate([stream.take(7) for _ in range(715)]), expected)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    arrival=st.one_of(ARRIVALS, JITTERY),
    deadline_ms=st.floats(0.5, 10),
    capacity=st.one_of(st.none(), st.integers(0, 8)),
    late=st.sampled_from(["run", "drop"]),
    chunk=st.integers(1, 300),
    warmup=st.integers(0, 120),
    ahead_s=st.sampled_from([replication.DEVICE_AHEAD_S, 0.0, 0.003]),
)
def test_a_replication_in_chunks_is_the_replication_at_once(three_level, seed, arrival, deadline_ms, capacity, late, chunk, warmup,
                                                             ahead_s):  # fmt: skip
    """Also with the device sampled no further than each chunk's last arrival (0) or a few ms
    past it: every server then stops for the device again and again, and the window grows.
    With time-slicing, whose slice left carries from chunk to chunk; half the cases have a noise,
    so the window also carries the speed alone (the share the slicing reads)."""
    device, workload = fluctuating(0.3, 1.5, noisy=seed % 2 == 0, slice_ms=0.5), queued(arrival, deadline_ms, capacity, late)
    plan = build_plan(parse_scenario(scenario_dict(three_level, seed=seed, requests=400, warmup_requests=warmup, device=device,
                                                   workload=workload, policies=POLICIES)))  # fmt: skip
    inputs = sample_inputs(plan, 0)
    whole = pd.concat([run_policy(plan, inputs, p, 0, engine="auto") for p in range(len(POLICIES))], ignore_index=True)
    with mock.patch.object(replication, "DEVICE_AHEAD_S", ahead_s):
        tallies, frames, _ = streamed_replication(plan, 0, KeptRecords(), chunk)
    pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), whole, check_exact=True)
    reference = plan_tallies(plan, whole)
    for label, tally in zip(plan.labels, tallies):
        expected = reference[label][0]
        for field in ("counts", "sums", "fine_bins", "fine_counts", "coarse_bins", "coarse_counts", "routes_served", "routes_met"):
            np.testing.assert_array_equal(getattr(tally, field), getattr(expected, field), err_msg=f"{label}: {field}")
        assert (tally.reroutes, tally.latency_min_ms, tally.latency_max_ms) == (
            expected.reroutes, expected.latency_min_ms, expected.latency_max_ms)


def test_requests_waiting_for_a_level_that_never_returns_are_dropped(three_level):
    """Level 0 is evicted at 50 ms and never reloads (memory returns for 50 ms at a time, its
    reload takes a second): the window grows to its cap (twice the last arrival plus a minute),
    then static L0's requests, which wait for level 0, are dropped; a policy that takes the
    resident level serves every request. (The whole-run path holds its traces' last value past
    their horizon, so there a reload may complete after it; this is why the streamed path has a
    cap rather than a horizon.)"""
    device = {"speed": {"kind": "constant", "speed": 1.0},
              "memory": {"kind": "periodic", "high": 100, "low": 1.5, "period_s": 0.1, "duty": 0.5, "phase_s": 0.05},
              "storage_bandwidth_mb_s": 1}  # fmt: skip
    plan = build_plan(parse_scenario(scenario_dict(three_level, seed=3, requests=300, device=device,
                                                   policies=[POLICIES[0], {"kind": "greedy"}],
                                                   workload=queued({"kind": "poisson", "rate_hz": 200}, 5.0, None, "run"))))  # fmt: skip
    for chunk in (7, 300):
        records = pd.concat(streamed_replication(plan, 0, KeptRecords(), chunk)[1], ignore_index=True)
        static_0, greedy = (records[records["policy"] == label] for label in plan.labels)
        late = static_0["arrival_s"] > 0.06
        assert late.sum() > 250 and (static_0.loc[late, "outcome"] == "dropped").all()
        assert (greedy["outcome"] != "dropped").all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), steps=st.lists(st.floats(0.01, 30.0), min_size=1, max_size=6),
       periodic=st.booleans(), forget=st.booleans())  # fmt: skip
def test_the_device_window_is_the_device_sampled_at_once(seed, steps, periodic, forget):
    """Sampled in steps and forgotten behind, the window holds the very breakpoints, C and
    resident levels of the traces sampled at once, wherever it is exact."""
    transitions = np.array([[0.0, 1.0], [1.0, 0.0]])

    speed = MarkovProcess([1.0, 0.3], [0.5, 0.2], transitions, np.random.default_rng(seed), None)
    memory = (PeriodicProcess(2.0, 0.5, 1.3, 0.4, 0.2) if periodic
              else MarkovProcess([2.0, 0.5], [0.7, 0.3], transitions, np.random.default_rng(seed + 1), None))  # fmt: skip
    window = DeviceWindow(speed, memory, Residency([1_500_000, 400_000], 3.0))
    reached = 0.0
    for step in steps:
        reached += step
        window.ensure(reached)
        assert window.known_s >= reached
        if forget:
            window.forget(reached / 2)
    horizon = window.until_s
    whole_speed = SpeedTrace(markov_trace([1.0, 0.3], [0.5, 0.2], transitions, horizon, np.random.default_rng(seed)))
    whole_memory = (periodic_trace(2.0, 0.5, 1.3, 0.4, horizon, 0.2) if periodic
                    else markov_trace([2.0, 0.5], [0.7, 0.3], transitions, horizon, np.random.default_rng(seed + 1)))  # fmt: skip
    whole_resident = resident_trace(whole_memory, [1_500_000, 400_000], 3.0)
    times, speeds, cum, res_times, res_levels, share_times, shares = window.arrays()
    assert share_times is times and shares is speeds  # no noise: the share is the speed
    i = np.searchsorted(whole_speed.trace.times_s, times[0])
    np.testing.assert_array_equal(times, whole_speed.trace.times_s[i : i + len(times)])
    np.testing.assert_array_equal(speeds, whole_speed.trace.values[i : i + len(times)])
    np.testing.assert_array_equal(cum, whole_speed.cum_work_ms[i : i + len(times)])
    exact = res_times < window.known_s
    j = np.searchsorted(whole_resident.times_s, res_times[0])
    np.testing.assert_array_equal(res_times[exact], whole_resident.times_s[j : j + exact.sum()])
    np.testing.assert_array_equal(res_levels[exact], whole_resident.values[j : j + exact.sum()])
