"""Policies compared on the same requests: each policy's accuracy-at-deadline over every
replication of a scenario, and its paired difference from one of them with the verdict's 95 %
batch-means interval (:func:`simqos.sim.tally.paired_difference`) — without the report, the bound
or the figures, so a policy whose table is slow to solve is solved once.

    python benchmarks/paired.py scenarios/iot.yaml --add '{kind: queue_dp}' --against lookahead
"""

from __future__ import annotations

import argparse
import time

import yaml

from simqos.sim.execution import simulate
from simqos.sim.plan import build_plan
from simqos.sim.replication import NO_RECORDS, summarize_plan
from simqos.scenario import override
from simqos.scenario import load_scenario
from simqos.sim.tally import paired_difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario")
    parser.add_argument("--add", action="append", default=[], help="A policy entry in YAML, added to the scenario's.")
    parser.add_argument("--against", default=None, help="The label to pair with (default: the first policy).")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    policies = [p.model_dump(exclude_none=True) for p in scenario.policies] + [yaml.safe_load(a) for a in args.add]
    plan = build_plan(override(scenario, "policies", policies))
    started = time.perf_counter()
    run = simulate(plan, records=NO_RECORDS)
    pooled = run.pooled()
    summary = summarize_plan(plan, run, percentile_intervals=False).set_index("policy")
    against = args.against or plan.labels[0]
    print(f"{scenario.name}: {scenario.replications} replications, {time.perf_counter() - started:.0f} s; "
          f"paired with {against} (95 %)")
    for label in plan.labels:
        line = f"{label:<32} {summary.loc[label, 'accuracy_at_deadline']:8.2%}"
        if label != against:
            mean, low, high = paired_difference(pooled[label], pooled[against], "accuracy_at_deadline")
            line += f"   {100 * mean:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}] points"
        print(line)


if __name__ == "__main__":
    main()
