"""Planner benchmark: build + solve time with every asset in the model, on the reference home.

``run_benchmark()`` is what ``hems bench planner --json`` prints; the scenario is
``hems.planner.scenarios.reference_inputs`` (battery, EV plugged with a departure, HVAC on a hot day,
water heater with draws, two deferrables, a DR import cap over the evening peak).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from hems.home import HomeParams
from hems.planner.scenarios import reference_inputs
from hems.planner.solve import plan


def run_benchmark(
    horizons: tuple[int, ...] = (96, 192, 288), repeats: int = 20, step_s: float = 900.0
) -> list[dict]:
    """Median and p95 wall time (ms) of build + solve per horizon, after one warm-up solve."""
    params = HomeParams()
    results = []
    for steps in horizons:
        inputs = reference_inputs(steps, step_s, params=params)
        plan(params, inputs)  # warm-up
        total, build, solve = [], [], []
        status = ""
        for _ in range(repeats):
            t0 = time.perf_counter()
            p = plan(params, inputs)
            total.append((time.perf_counter() - t0) * 1000.0)
            build.append(p.build_ms)
            solve.append(p.solve_ms)
            status = p.status
        total.sort()
        results.append(
            {
                "steps": steps,
                "step_s": step_s,
                "median_ms": round(statistics.median(total), 2),
                "p95_ms": round(total[min(len(total) - 1, int(np.ceil(0.95 * len(total))) - 1)], 2),
                "build_median_ms": round(statistics.median(build), 2),
                "solve_median_ms": round(statistics.median(solve), 2),
                "status": status,
            }
        )
    return results


def main(argv: list[str] | None = None) -> int:
    """``hems bench planner [--json] [--repeats N] [--horizons 96,192,288] [--step-s 900]``."""
    ap = argparse.ArgumentParser(prog="hems bench planner", description="planner build + solve time")
    ap.add_argument("--json", action="store_true", help="print the JSON list only")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--horizons", default="96,192,288", help="comma-separated step counts")
    ap.add_argument("--step-s", type=float, default=900.0, help="step length in seconds")
    args = ap.parse_args(argv)
    horizons = tuple(int(h) for h in args.horizons.split(","))
    results = run_benchmark(horizons, args.repeats, args.step_s)
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            print(
                f"{r['steps']:>4} steps: median {r['median_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms ({r['status']})"
            )
    return 0
