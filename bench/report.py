"""How long the canary report takes to draw, and how big the page is, for long gates.

A run with ``--gates`` gates, each at the per-look record's cap (120 looks, the record's
MAX_LOOKS) of the sample's checks, drawn by ``pages.render_run`` (pure; what the api-server does
after reading the database). Prints the median render time and the page's size.

    .venv/bin/python bench/report.py                # 4 gates x 120 looks x 2 checks
    .venv/bin/python bench/report.py --gates 8 --checks 6
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from canary_operators.report import pages  # noqa: E402
from canary_operators.report.model import RunReport, TaskRow  # noqa: E402

SAMPLE = json.loads((ROOT / "tests" / "data" / "looks_sample.json").read_text())


def gate_record(gate: str, weight: int, looks: int, checks: int) -> dict:
    record = copy.deepcopy(SAMPLE)
    record.update(gate=gate, weight=weight)
    template = record["looks"][-2]  # a look with bounds on every check
    extra = [dict(c, check=f"{c['check']}_{i}") for i in range(1, checks // 2) for c in template["checks"]]
    record["looks"] = []
    for n in range(1, looks + 1):
        look = copy.deepcopy(template)
        look.update(n=n, t=5.0 * n, at=record["shifted_at"] + 5.0 * n, outcome="hold" if n < looks else "advance")
        look["checks"] = (look["checks"] + copy.deepcopy(extra))[:checks]
        for c in look["checks"]:
            c["canary_value"] = (c["canary_value"] or 0) * (1 + 0.01 * (n % 7))
        record["looks"].append(look)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gates", type=int, default=4)
    parser.add_argument("--looks", type=int, default=120)
    parser.add_argument("--checks", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    start = SAMPLE["shifted_at"]
    gates = tuple(gate_record(f"gate_{w}", w, args.looks, args.checks) for w in (1, 5, 25, 50, 75, 90)[:args.gates])
    tasks = tuple(TaskRow(t, "success", 1, start, start + 600) for g in gates for t in (f"shift_to_{g['weight']}", g["gate"]))
    report = RunReport(dag_id="canary_bench", run_id="bench", release="bench", state="success", start=start,
                       end=start + 600 * len(gates), version="v2", stable_version="v1", gates=gates, tasks=tasks,
                       xcoms={f"shift_to_{g['weight']}": {"return_value": {"weight": g["weight"], "shifted_at": start}} for g in gates})
    times, html = [], ""
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        html = pages.render_run(report, pages.Links())
        times.append(time.perf_counter() - t0)
    print(f"{args.gates} gates x {args.looks} looks x {args.checks} checks: render {statistics.median(times) * 1000:.0f} ms "
          f"(median of {args.repeat}), page {len(html.encode()) / 1024:.0f} KiB, "
          f"records {sum(len(json.dumps(g)) for g in gates) / 1024:.0f} KiB as JSON", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
