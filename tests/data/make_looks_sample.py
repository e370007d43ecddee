"""Writes looks_sample.json: a gate's per-look record (canary_operators/looks.py) of a rolled-back
release, judged by the real judge on literal counts. Run from the repo root:
``python tests/data/make_looks_sample.py``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "plugins"))

from canary_operators.judge import Gate, judge  # noqa: E402
from canary_operators.looks import GateLooks, gate_state, observed_to_dict  # noqa: E402
from canary_operators.measurement import ArmSample, Measurement  # noqa: E402
from canary_operators.spec import parse_spec  # noqa: E402

SPEC = parse_spec({
    "name": "checkout", "router": {"type": "haproxy", "conn_id": "c", "settings": {"backend": "web"}},
    "metrics": {"type": "prometheus", "conn_id": "p"}, "steps": [5, 25, 100], "bake_time": "60s", "gate_timeout": "10m",
    "sample_ratio": {"enabled": False},
    "checks": [{"name": "errors", "kind": "error_rate", "max_increase_pp": 0.5},
               {"name": "p99_latency", "kind": "latency", "quantile": 0.99, "max_ratio": 1.2}],
    "promote": {"type": "command", "command": ["true"]}}, "checkout.yaml")
ERRORS = ('sum(increase(http_requests_total{version="%s",code=~"5.."}[%ds])) / '
          'sum(increase(http_requests_total{version="%s"}[%ds]))')
LATENCY = 'histogram_quantile(0.99, sum by (le) (increase(http_request_duration_seconds_bucket{version="%s"}[%ds])))'
SHIFTED_AT = 1764500000.0
LOOKS = [  # seconds since the shift, canary (5xx, requests), baseline (5xx, requests)
    (10, (0, 40), (2, 900)),
    (20, (1, 160), (5, 2850)),
    (28, (9, 620), (15, 5600)),
    (35, (30, 929), (20, 8200)),
]


def buckets(requests: int) -> tuple:
    shares = [0.2, 0.55, 0.85, 0.97, 0.995, 1.0, 1.0]
    return tuple(zip([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, float("inf")], [round(s * requests) for s in shares]))


def record() -> dict:
    looks = GateLooks(gate="gate_5", weight=5, shifted_at=SHIFTED_AT)
    for t, (c5xx, cn), (b5xx, bn) in LOOKS:
        window = t - 5  # the settle time is left out
        observed = {
            "errors": Measurement("errors", ArmSample(c5xx / cn, cn, ERRORS % ("v3", window, "v3", window), events=c5xx),
                                  ArmSample(b5xx / bn, bn, ERRORS % ("v2", window, "v2", window), events=b5xx), window),
            "p99_latency": Measurement("p99_latency", ArmSample(0.31, cn, LATENCY % ("v3", window), buckets=buckets(cn)),
                                       ArmSample(0.29, bn, LATENCY % ("v2", window), buckets=buckets(bn)), window),
        }
        gate = Gate(weight=5, baked=t >= SPEC.bake_time, final=False)
        decision = judge(SPEC.checks, observed, gate, SPEC.sample_ratio, SPEC.min_score)
        evidence = {"weight": 5, "elapsed_seconds": float(t), "window_seconds": float(window), "last_gate": False,
                    **decision.to_dict()}
        looks.add(evidence, {k: observed_to_dict(v) for k, v in observed.items()}, gate_state(gate), SHIFTED_AT + t)
    return looks.to_dict()


if __name__ == "__main__":
    (HERE / "looks_sample.json").write_text(json.dumps(record(), indent=1, allow_nan=False) + "\n")
