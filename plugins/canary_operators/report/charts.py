"""Which plots a run's report gets, from the gates' per-look records (XCom ``looks``). Pure.

Per gate and check: canary against baseline over the seconds since the shift, the anytime-valid
bounds the judge used (``CheckResult.bounds``: ranges as shaded bands, the fail and pass limits
as dashed lines), and the first look at which the check's verdict was pass or fail, and the
gate's decision, as marked moments. Plus the weight over time: as set, and as read back.
"""

from __future__ import annotations

from dataclasses import dataclass

from canary_operators.report.svg import COLORS, Band, Chart, Marker, Series, finite

# A check's values as the judge reports them: error rates and shares are fractions, latencies seconds.
UNITS = {"error_rate": "percent", "sample_ratio": "percent", "latency": "ms"}
# Scalar bounds drawn as limits on the canary (classifiers.error_rate).
LIMITS = {"fail_if_canary_above": ("fail above", COLORS["fail"]), "pass_if_canary_below": ("pass below", COLORS["pass"])}
DECIDED = ("pass", "fail")


@dataclass(frozen=True)
class CheckPlot:
    gate: str
    check: str
    kind: str
    chart: Chart
    verdict: str  # at the gate's last recorded look
    reason: str
    threshold: str
    statistic: str
    decided_at: float | None  # seconds since the shift of the first pass or fail, if any


def unit_of(kind: str) -> str:
    return UNITS.get(kind, "")


def check_names(record: dict) -> list[str]:
    """Every check of the gate's looks, in the order they first appear."""
    names: dict[str, None] = {}
    for look in record.get("looks") or []:
        for c in look.get("checks") or []:
            if isinstance(c, dict) and c.get("check") is not None:
                names.setdefault(str(c["check"]), None)
    return list(names)


def _check_at(look: dict, name: str) -> dict | None:
    return next((c for c in look.get("checks") or [] if isinstance(c, dict) and str(c.get("check")) == name), None)


def _pair(value) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = finite(value[0]), finite(value[1])
        if lo is not None and hi is not None:
            return lo, hi
    return None


def decision_look(record: dict) -> dict | None:
    """The look that decided the gate (advance or rollback), if the gate decided."""
    for look in reversed(record.get("looks") or []):
        if look.get("outcome") in ("advance", "rollback"):
            return look
    return None


def check_plot(record: dict, name: str) -> CheckPlot:
    """One check of one gate, over its looks."""
    gate = str(record.get("gate") or "gate")
    looks = [lk for lk in record.get("looks") or [] if isinstance(lk, dict)]
    canary, baseline, limits, bands = [], [], {}, {}
    kind = verdict = reason = threshold = statistic = ""
    decided_at = decided_verdict = None
    for look in looks:
        t = finite(look.get("t"))
        c = _check_at(look, name)
        if t is None or c is None:
            continue
        kind = str(c.get("kind") or kind)
        verdict, reason = str(c.get("verdict") or ""), str(c.get("reason") or "")
        threshold, statistic = str(c.get("threshold") or threshold), str(c.get("statistic") or statistic)
        canary.append((t, c.get("canary_value")))
        baseline.append((t, c.get("baseline_value")))
        if decided_at is None and verdict in DECIDED:
            decided_at, decided_verdict = t, verdict
        for key, value in (c.get("bounds") or {}).items():
            if key in LIMITS:
                limits.setdefault(key, []).append((t, value))
            elif not str(key).endswith("_bucket") and _pair(value) is not None:
                bands.setdefault(str(key), []).append((t, *_pair(value)))
    series = [Series(f"canary {name}", tuple(canary), COLORS["canary"]),
              Series(f"baseline {name}", tuple(baseline), COLORS["baseline"])]
    series += [Series(LIMITS[key][0], tuple(points), LIMITS[key][1], dashed=True, dots=False)
               for key, points in limits.items()]
    band_list = [Band(f"{key.replace('_', ' ')} (anytime-valid)", tuple(points),
                      COLORS["canary_band"] if key.startswith("canary") else COLORS["band"])
                 for key, points in bands.items()]
    markers = []
    if decided_at is not None:
        markers.append(Marker(decided_at, f"{name} {decided_verdict} at {decided_at:.0f}s",
                              COLORS["fail"] if decided_verdict == "fail" else COLORS["pass"]))
    decision = decision_look(record)
    if decision is not None and finite(decision.get("t")) is not None and finite(decision.get("t")) != decided_at:
        markers.append(Marker(decision["t"], str(decision.get("outcome", "")).upper(), COLORS["marker"]))
    chart = Chart(title=f"{gate} · {name}: canary against baseline", unit=unit_of(kind), series=tuple(series),
                  bands=tuple(band_list), markers=tuple(markers), x_label="seconds since the shift")
    return CheckPlot(gate, name, kind, chart, verdict, reason, threshold, statistic, decided_at)


def gate_plots(record: dict) -> list[CheckPlot]:
    return [check_plot(record, name) for name in check_names(record)]


TARGET_COLORS = (("#868e96", "#2b8a3e"), ("#adb5bd", "#1864ab"), ("#ced4da", "#862e9c"), ("#dee2e6", "#e67700"))


def weight_chart(points: list[dict], start: float) -> Chart:
    """The canary's weight over the run: ``points`` are ``{"at": epoch, "set": %, "read": %, "label": ...,
    "target": ...}`` (set or read may be None), drawn as steps over the seconds since ``start``; one
    pair of lines per target of a release across several targets."""
    ordered = sorted((p for p in points if finite(p.get("at")) is not None), key=lambda p: p["at"])
    targets = list(dict.fromkeys(str(p.get("target") or "") for p in ordered if p.get("target")))
    series = []
    for i, target in enumerate(targets or [""]):
        mine = [p for p in ordered if str(p.get("target") or "") in (target, "")]
        suffix = f" ({target})" if target else ""
        set_color, read_color = TARGET_COLORS[i % len(TARGET_COLORS)]
        series += [Series("set" + suffix, tuple((p["at"] - start, p["set"]) for p in mine if finite(p.get("set")) is not None),
                          set_color, dashed=True, step=True),
                   Series("read back from the router" + suffix,
                          tuple((p["at"] - start, p["read"]) for p in mine if finite(p.get("read")) is not None),
                          read_color, step=True)]
    markers = tuple(Marker(p["at"] - start, str(p["label"]) + (f" {p['target']}" if p.get("target") else ""),
                           COLORS["fail"] if "roll" in str(p["label"]) else COLORS["marker"])
                    for p in ordered if p.get("label"))
    return Chart(title="canary weight over time", unit="weight", css_class="chart weight-chart", series=tuple(series),
                 markers=markers, x_label="seconds since the run started")
