"""Do the nines intervals cover? Each of R replications of a scenario gets its own interval
(from its own batches); the truth is the miss rate of all R pooled. Prints, per policy, how
often the batch-means interval covers it, against a Wilson interval on raw counts (requests as
independent draws), and the median design effect.

    python benchmarks/intervals.py [--scenario scenarios/iot.yaml] [--requests 20000] [--replications 40]
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from simqos.sim.execution import run_plan
from simqos.sim.plan import build_plan
from simqos.sim.replication import summarize_plan
from simqos.sim.metrics import nines
from simqos.scenario import load_scenario
from simqos.scenario import override


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="scenarios/iot.yaml")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--replications", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    for field, value in (("requests", args.requests), ("warmup_requests", min(scenario.warmup_requests, args.requests // 10)),
                         ("replications", args.replications)):
        scenario = override(scenario, field, value)
    plan = build_plan(scenario)
    records = run_plan(plan, workers=args.workers)
    pooled = summarize_plan(plan, records, percentile_intervals=False).set_index("policy")
    per = summarize_plan(plan, records, by_replication=True)
    print(f"{scenario.name}: {args.replications} replications x {args.requests} requests; "
          "coverage of the pooled nines by each replication's 95 % interval")
    print(f"{'policy':32s} {'pooled nines':>12s} {'batch means':>11s} {'raw Wilson':>10s} {'design effect':>13s}")
    for policy, g in per.groupby("policy", sort=False):
        truth = -math.log10(pooled.loc[policy, "miss_rate"])
        covered = float(((g["nines_low"] <= truth) & (g["nines_high"].fillna(np.inf) >= truth)).mean())
        raw = float(np.mean([
            low <= truth <= (math.inf if high is None else high)
            for _, low, high in (nines(int(r.requests - r.met), int(r.requests)) for r in g.itertuples())
        ]))
        print(f"{policy:32s} {truth:12.2f} {covered:11.2f} {raw:10.2f} {g['miss_design_effect'].median():13.1f}")


if __name__ == "__main__":
    main()
