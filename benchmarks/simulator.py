"""Simulator benchmark: requests simulated per second, per policy (iot.yaml's, and queue_dp),
against a naive reference.

    python benchmarks/simulator.py                 # 20,000 requests of scenarios/iot.yaml, 3 repeats
    python benchmarks/simulator.py --million       # also 10^6 requests under deadline_aware
    python benchmarks/simulator.py --ten-million   # 10^7 requests (4 replications on 2 processes), with nines

The naive reference is the design the engine avoids: one SimPy process per request, one
``simpy.Resource`` for the device, and one ``timeout`` per layer (speed read at the layer's
start). It serves the same inputs under static level 0. Each policy is timed on the SimPy
engine (the reference) and on the compiled fast path (``engine: auto``, equal record for
record); both include building the records table. Everything runs on one core in this process;
the figures are medians of the repeats, taken round-robin over the cases, and "x naive" is
the ratio to the reference's median measured in the same run. The fast path is compiled (and
cached) before timing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import simpy

from simqos.engine import build_plan, run_plan, run_policy, sample_inputs, summarize_plan
from simqos.scenario import load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parent.parent


def naive_reference(plan, inputs) -> None:
    """One process per request, a Resource, a timeout per layer."""
    model = plan.model
    env = simpy.Environment()
    device = simpy.Resource(env, capacity=1)
    layers = range(len(model.sorted_samples_ms))
    work = inputs.work_ms  # per segment; spread evenly over its layers
    per_segment = [int((model.layer_segment == s).sum()) for s in range(model.n_segments)]

    def request(i):
        with device.request() as slot:
            yield slot
            for j in layers:
                seg = model.layer_segment[j]
                yield env.timeout(work[i, 0, seg] / per_segment[seg] / inputs.speed.speed_at(env.now) / 1e3)

    def source():
        for i, t in enumerate(inputs.arrivals_s):
            yield env.timeout(t - env.now)
            env.process(request(i))

    env.process(source())
    env.run()


def rates(cases: dict, n: int, repeats: int) -> dict[str, float]:
    """Requests per second of each case, the median of ``repeats`` timings taken round-robin
    (case after case, then again), so that a noisy spell of the machine falls on every case
    alike rather than on whichever ran then."""
    times = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: n / statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--million", action="store_true")
    parser.add_argument("--ten-million", action="store_true")
    args = parser.parse_args()
    base = load_scenario(ROOT / "scenarios" / "iot.yaml")
    # iot.yaml's policies and queue_dp, which the scenario leaves out (its table takes ~45 s to solve)
    policies = [p.model_dump() for p in base.policies] + [{"kind": "queue_dp"}]
    spec = parse_scenario(base.model_dump() | {"requests": args.requests, "replications": 1, "warmup_requests": 0,
                                                "policies": policies})
    plan = build_plan(spec)
    inputs = sample_inputs(plan, 0)
    n = len(inputs.arrivals_s)
    for p in range(len(plan.labels)):
        run_policy(plan, inputs, p, 0, engine="auto")  # compile, and prepare each policy's tables, once
    cases = {"naive reference (static L0)": lambda: naive_reference(plan, inputs)}
    for engine in ("simpy", "auto"):
        for p, label in enumerate(plan.labels):
            cases[f"{'SimPy' if engine == 'simpy' else 'fast path'}: {label}"] = lambda p=p, e=engine: run_policy(plan, inputs, p, 0, engine=e)
    measured = rates(cases, n, args.repeats)
    naive = measured["naive reference (static L0)"]
    print(f"iot.yaml, {n} requests, {plan.model.n_segments} segments, {len(plan.model.sorted_samples_ms)} layers; "
          f"median of {args.repeats}, taken round-robin")
    print(f"{'engine / policy':<44} {'requests/s':>12} {'x naive':>8}")
    for name, r in measured.items():
        print(f"{name:<44} {r:>12,.0f} {r / naive:>7.2f}x")
    if args.million:
        big = parse_scenario(spec.model_dump() | {"requests": 1_000_000})
        plan = build_plan(big)
        index = next(i for i, label in enumerate(plan.labels) if label.startswith("deadline_aware"))
        start = time.perf_counter()
        inputs = sample_inputs(plan, 0)
        sampled = time.perf_counter()
        for engine in ("simpy", "auto"):
            begin = time.perf_counter()
            records = run_policy(plan, inputs, index, 0, engine=engine)
            done = time.perf_counter()
            miss = float((records["outcome"] != "met").mean())
            print(f"10^6 requests under {plan.labels[index]} ({engine}): inputs {sampled - start:.1f} s, "
                  f"simulation and records {done - begin:.1f} s; miss rate {miss:.2e}")
    if args.ten_million:
        ten_million(spec)


def ten_million(spec) -> None:
    """10^7 requests of iot.yaml under deadline_aware: 4 replications of 2.5 x 10^6 on 2
    processes, fast path, records and summary (nines with their 95 % interval) included."""
    da = next(p for p in spec.policies if p.kind == "deadline_aware")
    big = parse_scenario(spec.model_dump() | {"requests": 2_500_000, "replications": 4, "warmup_requests": 1000,
                                              "policies": [da.model_dump()]})
    plan = build_plan(big)
    start = time.perf_counter()
    records = run_plan(plan, workers=2)
    simulated = time.perf_counter()
    row = summarize_plan(plan, records).iloc[0]
    done = time.perf_counter()
    total = done - start
    print(f"10^7 requests under {plan.labels[0]}, 4 replications on 2 processes: {total:.1f} s "
          f"(simulation and records {simulated - start:.1f} s, summary {done - simulated:.1f} s); "
          f"{len(records) / total / 2:,.0f} requests/s per core")
    print(f"  nines {row['nines']:.3f} [{row['nines_low']:.3f}, {row['nines_high']:.3f}] from {int(row['requests']):,} requests "
          f"(miss rate {row['miss_rate']:.3e}, replication spread {row['replication_miss_rate_std']:.1e})")


if __name__ == "__main__":
    main()
