"""Time to safe for every fault in the safety scenarios, on real Airflow, HAProxy and Prometheus.

    .venv/bin/python bench/safety.py            # every fault, about 12 minutes on 2 cores
    .venv/bin/python bench/safety.py --only admin_api_down api_server_down

Starts the demo stack and Airflow's four services (see ``tests/safety_scenarios.py``), injects
each fault while a gate judges the canary at 10%, and prints how long it took until HAProxy's
admin API read the canary at 0%. Three Airflow set-ups, each with its own spec:

- ``quick``: the guard's ``stale_after`` at 20 s, a sweep every 5 s, gate_timeout 20 s;
- ``outage``: ``stale_after`` 180 s, so a healthy run riding out a 40 s api-server outage is not
  taken for stuck;
- ``poke``: gates wait on a worker (``gate_mode: poke``), for the SIGKILL case.

The same scenarios, with asserted bounds, run in ``make test`` (``tests/test_safety_faults.py``),
except the minute-long outages and the poke-mode kill, which run only here.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "plugins"))

from tests import safety_scenarios as scenarios  # noqa: E402
from tests.conftest import ADMIN_TOKEN, load_module  # noqa: E402  (also sets a private AIRFLOW_HOME)

SETUPS = {
    "quick": ({}, ["marked_failed", "marked_success", "paused", "deleted", "triggerer_stopped", "cleared_and_rerun",
                   "second_release_refused", "admin_api_down"]),
    "outage": ({"stale_after": "180s"}, ["api_server_down"]),
    "poke": ({"gate_mode": "poke"}, ["gate_task_killed"]),
}
NEEDS_CLIENT = {"marked_success", "second_release_refused"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="scenario names (default: all)")
    args = parser.parse_args(argv)
    wanted = set(args.only or [name for _, names in SETUPS.values() for name in names])
    client = load_module("include/ci/trigger_release.py", "trigger_release_bench")
    stack_module = load_module("include/demo/stack.py", "demo_stack_bench")
    results: list[tuple[str, str]] = []
    work = Path(tempfile.mkdtemp(prefix="canary-bench-safety-"))
    ports = stack_module.free_ports(5)
    stack = stack_module.DemoStack(workdir=work / "stack", frontend_port=ports[0], admin_port=ports[1],
                                   stable_port=ports[2], canary_port=ports[3], prometheus_port=ports[4],
                                   admin_token=ADMIN_TOKEN, rps=300, loadgen_max_seconds=3600)
    print(f"demo stack and Airflow under {work}", flush=True)
    with stack:
        for setup, (changes, names) in SETUPS.items():
            todo = [n for n in names if n in wanted]
            if not todo:
                continue
            print(f"\n[{setup}] starting Airflow with spec changes {changes or 'none'} ...", flush=True)
            lab = scenarios.SafetyLab.start(stack, work / f"home-{setup}", _fresh(work / f"releases-{setup}"),
                                            spec_changes=changes)
            try:
                for name in todo:
                    started = time.monotonic()
                    scenario = getattr(scenarios, name)
                    try:
                        lab.reset()
                        measured = scenario(lab, client) if name in NEEDS_CLIENT else scenario(lab)
                        line = measured.line()
                    except Exception as e:  # noqa: BLE001 - report and go on with the next fault
                        line = f"FAILED [{name}]: {type(e).__name__}: {str(e)[:600]}"
                    print(f"{line}   (scenario took {time.monotonic() - started:.0f}s)", flush=True)
                    results.append((name, line))
            finally:
                lab.stop()
    print("\nsummary:")
    for _, line in results:
        print(f"  {line}")
    return 0


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    sys.exit(main())
