"""Simulator benchmark: requests simulated per second, per policy (iot.yaml's, and queue_dp),
against a naive reference.

    python benchmarks/simulator.py                 # 20,000 requests of scenarios/iot.yaml, 3 repeats
    python benchmarks/simulator.py --million       # also 10^6 requests under deadline_aware
    python benchmarks/simulator.py --scale         # wall time and peak RSS of `simqos run`, 10^5 ... 10^8 requests
    python benchmarks/simulator.py --slice-ms 4    # with the device time-sliced (device.slice_ms): its cost

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
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import simpy
import yaml

from simqos.sim.inputs import sample_inputs
from simqos.sim.plan import build_plan
from simqos.sim.replication import run_policy
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
    parser.add_argument("--scale", action="store_true", help="the wall time and memory table, 10^5 ... --up-to")
    parser.add_argument("--up-to", type=int, default=10**8)
    parser.add_argument("--records", nargs="+", default=["none", "all"], choices=["all", "sample", "none"])
    parser.add_argument("--slice-ms", type=float, default=0.0, help="time-slice the device (device.slice_ms)")
    args = parser.parse_args()
    base = load_scenario(ROOT / "scenarios" / "iot.yaml")
    if args.scale:
        scale(base, args.up_to, args.records, args.repeats)
        return
    # iot.yaml's policies and queue_dp, which the scenario leaves out (its table takes ~45 s to solve)
    policies = [p.model_dump() for p in base.policies] + [{"kind": "queue_dp"}]
    device = base.device.model_dump() | {"slice_ms": args.slice_ms}
    spec = parse_scenario(base.model_dump() | {"requests": args.requests, "replications": 1, "warmup_requests": 0,
                                                "policies": policies, "device": device})
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
    print(f"iot.yaml, {n} requests, {plan.model.n_segments} segments, {len(plan.model.sorted_samples_ms)} layers"
          f"{f', slices of {args.slice_ms:g} ms' if args.slice_ms else ''}; median of {args.repeats}, taken round-robin")
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



def scale(spec, up_to: int, records: list[str], repeats: int, repeats_at_most: int = 1) -> None:
    """Wall time and peak memory of what a user runs — ``python -m simqos run`` in a child
    process, plots off — on iot.yaml under deadline_aware alone, one replication of 10^5 ...
    ``up_to`` requests, keeping the records as each of ``records`` says (Parquet); the median
    wall time of ``repeats`` runs (``repeats_at_most`` for 10^8 and over), and the largest peak
    RSS. Above 50,000 requests a run skips the offline optimum (simqos.bound.MAX_REQUESTS)."""
    da = next(p for p in spec.policies if p.kind == "deadline_aware")
    print(f"iot.yaml under {da.kind}, one replication, `python -m simqos run` with plots off; median of {repeats} "
          f"({min(repeats, repeats_at_most)} at 10^8 and over)")
    print("| requests | records | wall (s) | peak RSS (MB) | requests/s |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        warm = Path(tmp) / "warm.yaml"  # compile (and cache) the fast path before any timing
        warm.write_text(yaml.safe_dump(spec.model_dump(mode="json") | {"requests": 2000, "replications": 1, "output": None,
                                                                       "outputs": {"plots": False}}))
        subprocess.run([sys.executable, "-m", "simqos", "run", str(warm), "--out", str(Path(tmp) / "warm")],
                       check=True, capture_output=True)
        for exponent in range(5, len(str(up_to))):
            n = 10**exponent
            for which in records:
                raw = spec.model_dump(mode="json") | {
                    "requests": n, "replications": 1, "warmup_requests": 1000, "precision": None, "output": None,
                    "policies": [da.model_dump(mode="json", exclude_none=True)],
                    "outputs": {"records": which, "plots": False, "records_format": "parquet"},
                }
                path = Path(tmp) / f"scale-{exponent}-{which}.yaml"
                path.write_text(yaml.safe_dump(raw))
                walls, peak = [], 0
                for _ in range(repeats if n < 10**8 else min(repeats, repeats_at_most)):
                    start = time.perf_counter()
                    child = subprocess.Popen([sys.executable, "-m", "simqos", "run", str(path), "--out", str(Path(tmp) / "out")],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    _, status, usage = os.wait4(child.pid, 0)
                    walls.append(time.perf_counter() - start)
                    if status:
                        raise SystemExit(f"simqos run failed on {n:,} requests: {child.stderr.read().decode()[-2000:]}")
                    peak = max(peak, usage.ru_maxrss // 1024)
                wall = statistics.median(walls)
                print(f"| 10^{exponent} | {which} | {wall:.1f} | {peak} | {n / wall:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
