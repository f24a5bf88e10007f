"""A replication drawn and served in chunks is the replication drawn and served at once:
arrivals, records and tallies do not depend on the chunk sizes."""

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bundles import scenario_dict
from simqos.engine import KeptRecords, _streamed_replication, build_plan, plan_tallies, run_policy, sample_inputs
from simqos.scenario import parse_scenario
from simqos.workload import ArrivalStream

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
)
def test_a_replication_in_chunks_is_the_replication_at_once(three_level, seed, arrival, deadline_ms, capacity, late, chunk, warmup):
    device, workload = fluctuating(0.3, 1.5), queued(arrival, deadline_ms, capacity, late)
    plan = build_plan(parse_scenario(scenario_dict(three_level, seed=seed, requests=400, warmup_requests=warmup, device=device,
                                                   workload=workload, policies=POLICIES)))  # fmt: skip
    inputs = sample_inputs(plan, 0)
    whole = pd.concat([run_policy(plan, inputs, p, 0, engine="auto") for p in range(len(POLICIES))], ignore_index=True)
    tallies, frames, _ = _streamed_replication(plan, 0, KeptRecords(), chunk)
    pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), whole, check_exact=True)
    reference = plan_tallies(plan, whole)
    for label, tally in zip(plan.labels, tallies):
        expected = reference[label][0]
        for field in ("counts", "sums", "fine_bins", "fine_counts", "coarse_bins", "coarse_counts", "routes_served", "routes_met"):
            np.testing.assert_array_equal(getattr(tally, field), getattr(expected, field), err_msg=f"{label}: {field}")
        assert (tally.reroutes, tally.latency_min_ms, tally.latency_max_ms) == (
            expected.reroutes, expected.latency_min_ms, expected.latency_max_ms)
