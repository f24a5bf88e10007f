"""The serving core's queue rules, each against theory or a hand count; the real server's
decisions against the simulator's on the same arrivals and speeds (a fake clock); a user's
compiled policy on the fast path."""

from __future__ import annotations

import bisect

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from bundles import scenario_dict, write_bundle
from simqos.sim import serving
from simqos.errors import SimqosError
from simqos.results import read_records
from simqos.cli import app
from simqos.sim.inputs import sample_inputs
from simqos.sim.plan import build_plan
from simqos.sim.replication import run_policy
from simqos.scenario import parse_scenario


@pytest.fixture(scope="module")
def exponential(tmp_path_factory):
    """One layer, one level, exponential service of mean 1 ms (as an M/M/1 needs)."""
    samples = list(-np.log(1 - (np.arange(2000) + 0.5) / 2000))
    return write_bundle(tmp_path_factory.mktemp("mm1") / "exp", {("a", 0): samples}, {"a": 0})  # no glue: mean 1 ms


def _run(bundle, requests=60_000, engine="auto", **workload):
    base = {"arrival": {"kind": "poisson", "rate_hz": 700}, "deadline": {"kind": "constant", "ms": 1000}}
    plan = build_plan(parse_scenario(scenario_dict(bundle, requests=requests, workload=base | workload)))
    inputs = sample_inputs(plan, 0)
    return run_policy(plan, inputs, 0, 0, engine=engine)


def test_a_loss_system_blocks_as_erlang_b(exponential):
    """capacity 0: no waiting room. An M/M/1/1 loss system at ρ = 0.7 turns away
    ρ / (1 + ρ) = 41 % of arrivals — and admits every request that finds the device idle."""
    records = _run(exponential, queue={"capacity": 0})
    blocked = (records["outcome"] == "dropped").mean()
    assert blocked == pytest.approx(0.7 / 1.7, abs=0.01)
    served = records[records["outcome"] != "dropped"]
    assert (served["start_s"] == served["arrival_s"]).all()


def test_an_mm1k_queue_blocks_as_theory_says(exponential):
    """M/M/1/K with K = capacity + 1 in the system: P(block) = (1-ρ) ρ^K / (1-ρ^(K+1))."""
    rho, capacity = 0.7, 2
    k = capacity + 1
    records = _run(exponential, queue={"capacity": capacity})
    expected = (1 - rho) * rho**k / (1 - rho ** (k + 1))
    assert (records["outcome"] == "dropped").mean() == pytest.approx(expected, abs=0.01)


def test_requests_waiting_to_be_dropped_late_count_against_the_capacity(tmp_path):
    """Every admitted request waits in the queue until it leaves (served or dropped late): at no
    arrival are more than ``capacity`` admitted requests waiting."""
    bundle = write_bundle(tmp_path / "slow", {("a", 0): [5.0] * 10}, {"a": 0}, end_to_end_ms=[5.0])
    records = _run(bundle, requests=3000, queue={"capacity": 3, "late": "drop"},
                   arrival={"kind": "poisson", "rate_hz": 800}, deadline={"kind": "constant", "ms": 12})
    admitted = records[records["start_s"].notna()]
    for arrival in admitted["arrival_s"].to_numpy()[::7]:
        earlier = admitted[admitted["arrival_s"] < arrival]
        assert ((earlier["start_s"] > arrival)).sum() <= 3
    late = records[(records["outcome"] == "dropped") & records["start_s"].notna()]
    assert len(late) > 0 and late["finish_s"].isna().all() and late["latency_ms"].isna().all()


def test_the_records_decide_met_or_missed_from_their_own_columns(tmp_path, exponential):
    """Times are written at full precision: past 100 s of simulated time the columns still say
    which requests met their deadline."""
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(scenario_dict(exponential, requests=90_000, warmup_requests=0,
                                                 outputs={"plots": False, "records_format": "csv"},
                                                 workload={"arrival": {"kind": "poisson", "rate_hz": 700},
                                                           "deadline": {"kind": "constant", "ms": 3}})))
    assert CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out")]).exit_code == 0
    assert (tmp_path / "out" / "records" / "r0000-p00.csv.gz").exists()
    records = read_records(tmp_path / "out")
    served = records[records["outcome"] != "dropped"]
    assert served["finish_s"].max() > 100
    assert ((served["finish_s"] <= served["deadline_s"]) == (served["outcome"] == "met")).all()


def test_the_core_rules_by_hand():
    left = np.array([1.0, 2.0, 3.0, 0.0])
    assert serving.waiting_at(left, 3, 1.5) == 2 and serving.waiting_at(left, 3, 3.0) == 0
    assert serving.admits(0, 0, True) and not serving.admits(0, 0, False)
    assert serving.admits(2, 3, False) and not serving.admits(3, 3, False) and serving.admits(99, -1, False)
    assert serving.too_late(0.0, 0.001, 2.0, 1.0) and not serving.too_late(0.0, 0.003, 2.0, 1.0)
    times, speeds = np.array([0.0, 1.0]), np.array([1.0, 0.5])
    cum = np.array([0.0, 1000.0])
    assert serving.finish_time(times, speeds, cum, 0.5, 1000.0) == pytest.approx(2.0)  # 500 ms at 1, 500 ms at 0.5


@given(a=st.lists(st.integers(0, 9), max_size=30).map(sorted), x=st.integers(-1, 10), data=st.data())
def test_searching_from_a_hint_is_bisect_for_any_hint(a, x, data):
    """The drivers follow their traces forward from the last answer (bisect_from, advance); the
    answer must not depend on the hint, only the number of steps."""
    arr = np.array(a, dtype=float)
    hi = data.draw(st.integers(0, len(a)))
    hint = data.draw(st.integers(-2, len(a) + 2))
    assert serving.bisect_from(arr, float(x), hi, hint) == bisect.bisect_right(a[:hi], x)
    assert serving.waiting_at(arr, hi, float(x), hint) == serving.waiting_at(arr, hi, float(x))


def test_the_real_server_decides_as_the_simulator_on_a_fake_clock(two_level):
    """Served on a clock that advances exactly as the simulated device would, the real server
    (its queue rules and its policy's decisions) gives the simulator's records."""
    from simqos.validate.server import serve

    scenario = scenario_dict(two_level, requests=400, warmup_requests=0,
                             workload={"arrival": {"kind": "poisson", "rate_hz": 400}, "deadline": {"kind": "constant", "ms": 4},
                                       "queue": {"capacity": 4, "late": "drop"}},
                             policies=[{"kind": "deadline_aware"}, {"kind": "lookahead"}, {"kind": "greedy"}, {"kind": "dp"},
                                       {"kind": "queue_dp", "grid": 12, "queue_grid": 3, "max_queue": 2, "samples": 16, "quantiles": 2}])
    plan = build_plan(parse_scenario(scenario))
    inputs = sample_inputs(plan, 0)
    for index in range(len(plan.labels)):
        simulated = run_policy(plan, inputs, index, 0)
        served = simulated.index[simulated["finish_s"].notna()].tolist()
        clock = _FakeClock()
        device = _FakeDevice(inputs.work_ms, served, clock)
        real = serve(device, plan, index, inputs.arrivals_s, inputs.deadlines_s, lambda: 1.0, 0.0, clock.read, clock.wait)
        cost = real.pop("overhead_work_ms")  # the server's own cost: nothing, on a clock only the device moves
        assert (real.pop("resident_wait_ms") == 0.0).all()  # every level resident
        assert (cost[real["finish_s"].notna()] == 0.0).all()
        pd.testing.assert_frame_equal(real, simulated, check_exact=False, atol=1e-9)
        assert (real["route"] == simulated["route"]).all()


def test_the_real_server_waits_for_evicted_levels_as_the_simulator_does_on_a_fake_clock(tmp_path):
    """Under a memory process, on the fake clock: the policy sees the least sparse resident
    level, a chosen level not resident is waited for until the simulator's residency has it
    back, and a request whose level never returns is dropped — the simulator's records."""
    from simqos.validate.server import serve

    bundle = write_bundle(tmp_path / "m", {("a", 0): [2.0, 2.5], ("b", 0): [2.0, 2.5], ("a", 1): [1.0, 1.2], ("b", 1): [1.0, 1.2]},
                          {"a": 0, "b": 1}, level_bytes=[2_000_000, 800_000])
    memory = {"kind": "markov", "states": [{"memory_mb": 3, "mean_dwell_s": 0.3}, {"memory_mb": 1, "mean_dwell_s": 0.2},
                                           {"memory_mb": 0.5, "mean_dwell_s": 0.05}]}
    scenario = scenario_dict(bundle, requests=600, warmup_requests=0,
                             device={"memory": memory, "storage_bandwidth_mb_s": 20},
                             workload={"arrival": {"kind": "poisson", "rate_hz": 300}, "deadline": {"kind": "constant", "ms": 8}},
                             policies=[{"kind": "static", "level": 0}, {"kind": "static", "level": 1}, {"kind": "greedy"},
                                       {"kind": "deadline_aware", "count_queue": True}])
    plan = build_plan(parse_scenario(scenario))
    inputs = sample_inputs(plan, 0)
    levels = inputs.resident.values
    assert {0, 1, 2} <= set(levels.astype(int))  # every level evicted, and all back, at some time
    for index in range(len(plan.labels)):
        simulated = run_policy(plan, inputs, index, 0)
        served = simulated.index[simulated["finish_s"].notna()].tolist()
        clock = _FakeClock()
        device = _FakeDevice(inputs.work_ms, served, clock)
        real = serve(device, plan, index, inputs.arrivals_s, inputs.deadlines_s, lambda: 1.0, 0.0, clock.read, clock.wait,
                     residency=_FakeResidency(inputs.resident, clock))
        real.pop("overhead_work_ms")
        waited_ms = real.pop("resident_wait_ms")
        pd.testing.assert_frame_equal(real, simulated, check_exact=False, atol=1e-9)
        served_ms = real["latency_ms"].notna()
        assert (waited_ms[served_ms] <= real.loc[served_ms, "latency_ms"] + 1e-9).all()
        if index == 0:  # static level 0 waits out its evictions, and the records say how long
            assert waited_ms.max() > 40


def test_a_request_whose_level_never_returns_is_dropped_by_the_real_server_as_by_the_simulator(tmp_path):
    """The memory shrinks for good half a second in: static level 0's later requests wait for
    a level that never returns, and both servers drop them (no finish, no latency)."""
    from simqos.validate.server import serve

    bundle = write_bundle(tmp_path / "m", {("a", 0): [2.0], ("b", 0): [2.0], ("a", 1): [1.0], ("b", 1): [1.0]},
                          {"a": 0, "b": 1}, level_bytes=[2_000_000, 800_000])
    trace = tmp_path / "memory.csv"
    trace.write_text("time_s,memory_mb\n0,3\n0.5,1\n")
    scenario = scenario_dict(bundle, requests=300, warmup_requests=0,
                             device={"memory": {"kind": "trace", "path": str(trace), "after_end": "hold"}},
                             workload={"arrival": {"kind": "poisson", "rate_hz": 200}, "deadline": {"kind": "constant", "ms": 8}},
                             policies=[{"kind": "static", "level": 0}])
    plan = build_plan(parse_scenario(scenario))
    inputs = sample_inputs(plan, 0)
    simulated = run_policy(plan, inputs, 0, 0)
    clock = _FakeClock()
    served = simulated.index[simulated["finish_s"].notna()].tolist()
    real = serve(_FakeDevice(inputs.work_ms, served, clock), plan, 0, inputs.arrivals_s, inputs.deadlines_s, lambda: 1.0, 0.0,
                 clock.read, clock.wait, residency=_FakeResidency(inputs.resident, clock))
    real.pop("overhead_work_ms")
    real.pop("resident_wait_ms")
    pd.testing.assert_frame_equal(real, simulated, check_exact=False, atol=1e-9)
    late = simulated["arrival_s"] > 0.5
    assert (simulated.loc[late, "outcome"] == "dropped").all() and simulated.loc[late, "finish_s"].isna().all()
    assert (simulated.loc[simulated["arrival_s"] < 0.4, "outcome"] != "dropped").all()  # served before the squeeze


class _FakeResidency:
    """The simulator's residency, read on the fake clock: waiting moves the clock to when the
    level is back."""

    def __init__(self, resident, clock: _FakeClock) -> None:
        self.times, self.levels, self.clock = resident.times_s, resident.values, clock

    def sync(self) -> int:
        return int(self.levels[bisect.bisect_right(self.times, self.clock.now) - 1])

    def wait_for(self, level: int) -> bool:
        back = serving.resident_from(self.times, self.levels, level, self.clock.now)
        if np.isinf(back):
            return False
        self.clock.now = back
        return True


class _FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def read(self) -> float:
        return self.now

    def wait(self, t: float) -> None:
        self.now = max(self.now, t)


class _FakeDevice:
    """Stands in for the real model on a constant-speed device: each segment takes the
    request's simulated work, advancing the fake clock; the router records the levels decided."""

    def __init__(self, work_ms: np.ndarray, served: list[int], clock: _FakeClock) -> None:
        self.work_ms, self.served, self.clock = work_ms, list(served), clock
        self.router = type("Router", (), {"levels": []})()

    def infer(self, decide) -> tuple[int, ...]:
        self.router.levels = []
        work = None
        for segment in range(self.work_ms.shape[2]):
            level = decide(segment)  # may wait for its level, or find it never returns (then the request is not served)
            work = self.work_ms[self.served.pop(0)] if work is None else work
            self.router.levels.append(level)
            self.clock.now += work[level, segment] / 1e3
        return tuple(self.router.levels)


def test_the_rules_in_force_are_the_fields_off_their_defaults(two_level):
    plan = build_plan(parse_scenario(scenario_dict(two_level, requests=50)))
    rules = serving.Rules.of(plan.scenario, plan.model)
    assert serving.in_force(rules) == []  # an unbounded queue, late requests run, no idle table, no slicing
    busy = rules._replace(capacity=4, late_drop=True, slice_ms=2.0, idle_factor=np.array([[1.0, 1.3], [1.0, 1.1]]))
    assert serving.in_force(busy) == ["capacity", "late_drop", "idle_factor", "slice_ms"]
    assert serving.in_force(rules._replace(capacity=0)) == ["capacity"]  # no waiting room is a rule too


def _with_a_new_rule(monkeypatch, value: float) -> None:
    """A serving rule added the way a contributor would: one more field of the rules tuple (with
    its off default), set by the scenario. The planners read the rules through ``Rules.of``."""
    import collections

    fields = [*serving.Rules._fields, "preempt_ms"]
    extended = collections.namedtuple("Rules", fields, defaults=[*serving.Rules._field_defaults.values(), 0.0])
    made = serving.Rules.of

    class WithNewRule:
        @staticmethod
        def of(scenario, model):
            return extended(*made(scenario, model), preempt_ms=value)

    import simqos.bound
    import simqos.policies.queue_dp

    monkeypatch.setattr(simqos.bound, "Rules", WithNewRule)
    monkeypatch.setattr(simqos.policies.queue_dp, "Rules", WithNewRule)


QUEUE_DP = {"kind": "queue_dp", "grid": 12, "queue_grid": 3, "max_queue": 2, "samples": 16, "quantiles": 2}


def test_the_planners_refuse_a_rule_they_do_not_model(two_level, monkeypatch):
    """The bound and queue_dp model the queue rules themselves: a new rule in force makes them
    refuse, naming it, rather than plan for the old rules; left at its default it changes nothing."""
    from simqos.bound import plan_bound

    scenario = parse_scenario(scenario_dict(two_level, requests=60, replications=1, policies=[{"kind": "greedy"}, QUEUE_DP]))
    _with_a_new_rule(monkeypatch, 0.0)
    plan = build_plan(scenario)
    assert plan_bound(plan)["requests"] > 0
    _with_a_new_rule(monkeypatch, 2.5)
    with pytest.raises(SimqosError, match=r"^scenario: policies\[1\]: queue_dp does not model the serving rule in force here "
                                          r"\(preempt_ms = 2.5\); .*use dp or lookahead"):
        build_plan(scenario)
    plan = build_plan(parse_scenario(scenario_dict(two_level, requests=60, replications=1, policies=[{"kind": "greedy"}])))
    with pytest.raises(serving.UnmodelledRule, match=r"the offline optimum \(the bound\) does not model .*preempt_ms = 2.5"):
        plan_bound(plan)


def test_a_run_leaves_out_a_bound_that_refuses_and_says_why(two_level, monkeypatch, tmp_path):
    from simqos.api import run_scenario

    scenario = parse_scenario(scenario_dict(two_level, requests=60, replications=1, policies=[{"kind": "greedy"}]))
    _with_a_new_rule(monkeypatch, 1.0)
    result = run_scenario(scenario, out=tmp_path / "run")
    assert any("the offline optimum (the bound) does not model" in w and "preempt_ms = 1.0" in w for w in result.warnings)
    assert "bound" not in result.verdict
