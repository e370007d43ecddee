"""The evidence planner: how long each gate needs at the live traffic, and the gates that use it.

Literal traffic, the spec's defaults (steps 1, 5, 25, 50; bake 5 min; gate timeout 15 min; the
planner's cap 1 h) unless a test says otherwise. No timing asserts.
"""

from __future__ import annotations

import time

import pytest

from canary_operators.judge import Outcome
from canary_operators.measurement import ArmSample, Measurement
from canary_operators.planner import Traffic, plan_gates, planned_gate_timeout
from canary_operators.spec import RunConf, parse_spec

RUN = RunConf(release="web", version="v2", stable_version="v1")


def spec_with(**changes):
    data = {"name": "web", "router": {"type": "haproxy", "conn_id": "h", "settings": {"backend": "web"}},
            "metrics": {"type": "prometheus", "conn_id": "p"}, "promote": {"type": "command", "command": ["true"]}}
    data.update(changes)
    return parse_spec(data, "web.yaml")


def timeouts(plan) -> dict[int, float]:
    return {g.weight: g.gate_timeout for g in plan.gates}


# -- the plan ---------------------------------------------------------------------------------------

def test_high_traffic_leaves_the_spec_timeouts():
    plan = plan_gates(spec_with(), None, None, Traffic(200, 0.01))
    assert timeouts(plan) == {1: 900, 5: 900, 25: 900, 50: 900}
    assert plan.warnings == ()
    last = plan.gates[-1]
    assert last.evidence and last.canary_rps == 100 and last.needed_seconds == 300  # the bake time
    assert plan.lines[-1].startswith("at 50%: 100 req/s to the canary; min_requests 100 reached already;")


def test_low_traffic_lengthens_the_gates_that_need_it():
    plan = plan_gates(spec_with(), None, None, Traffic(50, 0.01))
    # At 1% the canary gets 0.5 req/s: 100 requests after 205 s (5 s settle), and more before its
    # point estimate is surely within the tolerance; the last gate needs evidence for 1% errors.
    assert plan.gates[0].min_requests_seconds == 205
    assert timeouts(plan)[5] == timeouts(plan)[25] == 900
    assert 900 < timeouts(plan)[1] < 3600 and 900 < timeouts(plan)[50] < 3600
    assert timeouts(plan)[50] == pytest.approx(1.25 * plan.gates[-1].needed_seconds, abs=1)
    assert "(spec 15.0 min, lengthened)" in plan.lines[-1]
    assert plan.warnings == ()


def test_lengthening_stops_at_the_cap_with_a_warning_naming_what_to_change():
    plan = plan_gates(spec_with(), None, None, Traffic(20, 0.01))
    assert timeouts(plan)[1] == 3600  # needs more than the cap
    assert plan.gates[0].needed_seconds > 3600
    assert any(w.startswith("at 1%: a healthy canary needs up to") for w in plan.warnings)
    assert all("plan_max_gate_timeout" in w and "max_increase_pp" in w and "early low-weight steps" in w
               for w in plan.warnings)
    raised = plan_gates(spec_with(plan_max_gate_timeout="3h"), None, None, Traffic(20, 0.01))
    assert timeouts(raised)[1] > 3600 and not any(w.startswith("at 1%") for w in raised.warnings)


def test_unknown_traffic_leaves_the_spec_timeouts_with_a_warning():
    for traffic in (Traffic(None, source="the metrics provider could not be read: 503"), Traffic(0.0, 0.01)):
        plan = plan_gates(spec_with(), None, None, traffic)
        assert timeouts(plan) == {1: 900, 5: 900, 25: 900, 50: 900}
        assert len(plan.warnings) == 1 and "live traffic unknown" in plan.warnings[0]


def test_warn_plans_but_keeps_the_spec_timeouts_and_off_does_not_plan():
    warn = plan_gates(spec_with(plan="warn"), None, None, Traffic(20, 0.01))
    assert timeouts(warn) == {1: 900, 5: 900, 25: 900, 50: 900}
    assert warn.gates[-1].needed_seconds > 900 and "gate_timeout" in warn.warnings[-1]
    off = plan_gates(spec_with(plan="off"), None, None, Traffic(20, 0.01))
    assert timeouts(off) == {1: 900, 5: 900, 25: 900, 50: 900} and off.warnings == ()


def test_the_run_steps_decide_which_gate_needs_evidence():
    plan = plan_gates(spec_with(), [5, 100], None, Traffic(100, 0.01))
    assert [(g.weight, g.evidence) for g in plan.gates] == [(5, True)]
    assert timeouts(plan)[5] == 3600  # 5 req/s to the canary from the start: the cap


def test_the_plan_round_trips_through_xcom_json():
    import json

    plan = plan_gates(spec_with(), None, None, Traffic(50, 0.01))
    pushed = json.loads(json.dumps(plan.to_dict()))
    assert planned_gate_timeout(pushed, 50) == timeouts(plan)[50]
    assert planned_gate_timeout(pushed, 10) is None and planned_gate_timeout(None, 50) is None


ERRORS = {"name": "errors", "kind": "error_rate"}
CHECKOUTS = {"name": "checkouts", "kind": "business", "metric": "checkouts", "min_ratio": 0.9}
REVENUE = {"name": "revenue", "kind": "business", "metric": "revenue", "unit": "amount", "min_ratio": 0.9}


def test_a_low_rate_business_count_lengthens_the_early_gates():
    # 200 req/s: the error rate settles at every gate within the bake time. 1 checkout per 100
    # requests, at 5% (10 req/s): an unlucky healthy canary's checkouts sit below 0.9x the
    # baseline's for 38 min, which an early gate holds on; the spec's 15 min would roll it back.
    errors_only = plan_gates(spec_with(checks=[ERRORS]), None, None, Traffic(200, 0.01))
    assert timeouts(errors_only) == {1: 900, 5: 900, 25: 900, 50: 900}
    traffic = Traffic(200, 0.01, business_rates={"checkouts": 0.01})
    plan = plan_gates(spec_with(checks=[ERRORS, CHECKOUTS]), None, None, traffic)
    assert [g.needed_seconds for g in plan.gates] == [9750, 2288, 530, 300]
    assert timeouts(plan) == {1: 3600, 5: 2860, 25: 900, 50: 900}
    assert "business check checkouts: baseline 0.01 per request" in plan.lines
    assert "a business check's min_ratio/max_ratio" in plan.warnings[0]  # the 1% gate needs more than the cap
    # Fewer is bad under min_ratio, more under max_ratio: with both, each side is planned.
    both = plan_gates(spec_with(checks=[ERRORS, {**CHECKOUTS, "max_ratio": 1.1}]), None, None, traffic)
    assert timeouts(both) == {1: 3600, 5: 3083, 25: 900, 50: 900}


def test_an_amount_is_planned_in_units_of_its_dispersion():
    # 3 purchases per 100 requests, $40 each: 1.2 dollars per request. With a dispersion of 40 (every
    # basket $40) revenue is the checkouts count in $40 units, and is planned exactly as that count;
    # with a dispersion of 400 (a few big baskets) it needs 10 times the requests.
    count = plan_gates(spec_with(checks=[ERRORS, {**CHECKOUTS}]), None, None,
                       Traffic(200, 0.01, business_rates={"checkouts": 0.03}))
    assert timeouts(count) == {1: 3600, 5: 900, 25: 900, 50: 900}

    def amount(dispersion):
        return plan_gates(spec_with(checks=[ERRORS, REVENUE]), None, None,
                          Traffic(200, 0.01, business_rates={"revenue": 1.2}, dispersions={"revenue": dispersion}))

    needed = [g.needed_seconds for g in count.gates]
    assert needed == [g.needed_seconds for g in amount(40).gates] == [3254, 701, 300, 300]
    spread = amount(400)
    assert [g.needed_seconds for g in spread.gates] == [32550, 7875, 2250, 1290]
    assert timeouts(spread) == {1: 3600, 5: 3600, 25: 2813, 50: 1613}
    assert "business check revenue: baseline 1.2 per request, dispersion 400 per unit" in spread.lines


def test_business_checks_that_cannot_be_measured_are_planned_for_min_requests_alone():
    checks = [ERRORS, CHECKOUTS, REVENUE, {**CHECKOUTS, "name": "custom", "query": "sum(rate(x[$window]))"}]
    traffic = Traffic(200, 0.01, business_rates={"revenue": 1.2, "custom": 0.01},  # revenue: no dispersion
                      unmeasured={"checkouts": "not measured on stable: 503"})
    plan = plan_gates(spec_with(checks=checks), None, None, traffic)
    assert timeouts(plan) == {1: 900, 5: 900, 25: 900, 50: 900}
    assert [g.needed_seconds for g in plan.gates] == [402, 300, 300, 300]  # as for the error rate alone
    assert plan.lines[1:4] == ("business check checkouts: planned for min_requests alone (not measured on stable: 503)",
                               "business check revenue: planned for min_requests alone (its baseline was not measured)",
                               "business check custom: planned for min_requests alone (a custom query gives no counts)")


# -- preflight reads the traffic ----------------------------------------------------------------

class _Provider:
    def __init__(self, baseline=(6000.0, 60.0), error=None):
        self.baseline, self.error = baseline, error

    def measure(self, check, scope):
        if self.error:
            raise self.error
        requests, events = self.baseline
        return Measurement(check.name, ArmSample(None, None, "c"),
                           ArmSample(events / requests if requests else None, requests, "b", events=events),
                           scope.window_seconds)


def test_preflight_reads_live_traffic_and_never_fails_for_it(monkeypatch):
    from canary_operators.exceptions import BackendUnavailable
    from canary_operators.operators import preflight

    monkeypatch.setattr(preflight, "build_provider", lambda release, run: _Provider())
    traffic = preflight.read_traffic(spec_with(), RUN, now=1_000_000.0)
    assert (traffic.requests_per_second, traffic.error_rate) == (10.0, 0.01)  # 6,000 requests in 10 min
    monkeypatch.setattr(preflight, "build_provider", lambda release, run: _Provider(error=BackendUnavailable("503")))
    assert not preflight.read_traffic(spec_with(), RUN).known
    monkeypatch.setattr(preflight, "build_provider", lambda release, run: _Provider(baseline=(0.0, 0.0)))
    assert "no request or error counts" in preflight.read_traffic(spec_with(), RUN).source


class _BusinessProvider:
    """6,000 stable requests with 60 errors; 60 checkouts; revenue $720 over 10 periods; refunds raise."""

    REVENUE_PERIODS = (0.10, 0.14, 0.08, 0.16, 0.12, 0.10, 0.14, 0.08, 0.16, 0.12)  # dollars per request

    def measure(self, check, scope):
        if check.name == "refunds":
            raise RuntimeError("422 bad query")
        events, periods = {"planner_traffic": 60.0, "checkouts": 60.0, "thin": 30.0}.get(check.name), None
        if check.name in ("revenue", "thin"):
            values = self.REVENUE_PERIODS[: 10 if check.name == "revenue" else 3]
            periods = tuple((1_000_000 + 60 * i, v) for i, v in enumerate(values))
            events = sum(values) * 600.0
        stable = ArmSample(events / 6000.0, 6000.0, "b", events=events, periods=periods)
        return Measurement(check.name, ArmSample(None, None, "c"), stable, scope.window_seconds)


def test_preflight_measures_each_business_check_on_stable(monkeypatch):
    from canary_operators.operators import preflight

    monkeypatch.setattr(preflight, "build_provider", lambda release, run: _BusinessProvider())
    checks = [ERRORS, CHECKOUTS, REVENUE, {**REVENUE, "name": "thin"}, {**CHECKOUTS, "name": "refunds"}]
    traffic = preflight.read_traffic(spec_with(checks=checks), RUN, now=1_000_000.0)
    assert (traffic.requests_per_second, traffic.error_rate) == (10.0, 0.01)
    assert traffic.business_rates == pytest.approx({"checkouts": 0.01, "revenue": 0.12})
    # Var/mean per request from the periods, split in two halves (each period of 600 requests
    # 0.02 or 0.04 off the mean 0.12, twice per half): 5; the judge's own estimate is the upper end
    # of its 95% range from 8 degrees of freedom, 14.7.
    assert traffic.dispersions == pytest.approx({"revenue": 14.70}, rel=1e-3)
    assert traffic.unmeasured == {"thin": "3 periods of revenue amounts, too few to measure their spread",
                                  "refunds": "not measured on stable: RuntimeError: 422 bad query"}
    plan = plan_gates(spec_with(checks=checks), None, None, traffic)  # and the plan says so
    assert ("business check refunds: planned for min_requests alone "
            "(not measured on stable: RuntimeError: 422 bad query)") in plan.lines


def test_latency_buckets_coarser_than_max_ratio_are_named():
    traffic = Traffic(200, 0.01, latency_buckets={"p99": (0.1, 0.25)})
    plan = plan_gates(spec_with(), None, None, traffic)
    assert ("latency check p99: stable's p99 lies in (0.1 s, 0.25 s], so a regression smaller than x2.5 there "
            "cannot be shown (max_ratio 1.1); add histogram buckets between 0.1 s and 0.25 s") in plan.warnings
    fine = plan_gates(spec_with(), None, None, Traffic(200, 0.01, latency_buckets={"p99": (0.2, 0.21)}))
    assert fine.warnings == ()


def test_preflight_reads_the_stable_quantiles_bucket(monkeypatch):
    from canary_operators.operators import preflight

    buckets = ((0.05, 90.0), (0.1, 980.0), (0.25, 999.0), (float("inf"), 1000.0))
    stable = ArmSample(0.01, 1000.0, "s", events=10.0, buckets=buckets)

    class Provider:
        def measure(self, check, scope):
            return Measurement(check.name, ArmSample(None, None, "c"), stable, scope.window_seconds)

    monkeypatch.setattr(preflight, "build_provider", lambda release, run: Provider())
    traffic = preflight.read_traffic(spec_with(), RUN, now=1_000_000.0)
    assert traffic.latency_buckets == {"p99": (0.1, 0.25)}


# -- the gates use the planned timeout -----------------------------------------------------------

def test_the_trigger_carries_the_planned_timeout_through_serialize():
    from canary_operators.triggers.metric_gate import MetricGateTrigger

    trigger = MetricGateTrigger(release={}, run={}, weight=50, shifted_at=1.0, poke_interval=30.0, gate_timeout=2400.0)
    path, kwargs = trigger.serialize()
    assert path == "canary_operators.triggers.metric_gate.MetricGateTrigger"
    assert MetricGateTrigger(**kwargs).gate_timeout == 2400.0
    assert MetricGateTrigger(**{**kwargs, "gate_timeout": None}).serialize()[1]["gate_timeout"] is None


def test_evaluate_gate_times_out_at_the_planned_value(monkeypatch):
    from canary_operators.operators import gate_evaluation

    thin = lambda check, scope: Measurement(check.name, ArmSample(0.0, 10.0, "c", events=0.0),  # noqa: E731
                                            ArmSample(0.01, 5000.0, "b", events=50.0), scope.window_seconds)
    monkeypatch.setattr(gate_evaluation, "build_provider", lambda release, run: type("P", (), {"measure": staticmethod(thin)})())
    spec = spec_with(checks=[{"name": "errors", "kind": "error_rate"}], sample_ratio={"enabled": False})
    shifted = time.time() - 1000  # past the spec's 900 s, within a planned 1,800 s
    assert gate_evaluation.evaluate_gate(spec, RUN, 50, shifted, {}).outcome is Outcome.ROLLBACK
    look = gate_evaluation.evaluate_gate(spec, RUN, 50, shifted, {}, gate_timeout=1800.0)
    assert look.outcome is Outcome.HOLD and "needs 100" in look.reason


class _TI:
    def __init__(self, plan):
        self.plan = plan

    def xcom_pull(self, task_ids, key="return_value"):
        return self.plan if (task_ids, key) == ("preflight", "plan") else None


def test_a_gate_reads_its_timeout_from_preflights_plan():
    from canary_operators.operators.metric_gate import GATE_TIMEOUT_MARGIN, MetricGate

    plan = {"gate_timeouts": {"50": 2400.0, "1": 900.0}}
    gate = MetricGate(task_id="gate_50", release=spec_with(), weight=50, shift_task_id="shift_to_50")
    assert gate._gate_timeout({"ti": _TI(plan)}) == 2400.0
    assert gate._trigger_timeout(2400.0) == 2400.0 + GATE_TIMEOUT_MARGIN
    assert gate.timeout == 3600 + GATE_TIMEOUT_MARGIN  # the static task timeout allows the cap
    no_plan = MetricGate(task_id="gate_50", release=spec_with(), weight=50, shift_task_id="shift_to_50")
    assert no_plan._gate_timeout({"ti": _TI(None)}) is None
    off = MetricGate(task_id="gate_50", release=spec_with(plan="off"), weight=50, shift_task_id="shift_to_50")
    assert off._gate_timeout({"ti": _TI(plan)}) is None and off.timeout == 900 + GATE_TIMEOUT_MARGIN
