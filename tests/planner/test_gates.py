"""The evidence planner: how long each gate needs at the live traffic.

Literal traffic, the spec's defaults (steps 1, 5, 25, 50; bake 5 min; gate timeout 15 min; the
planner's cap 1 h) unless a test says otherwise. No timing asserts.
"""

from __future__ import annotations

import pytest

from canary_operators.planner import Traffic, plan_gates
from tests.planner.web_release import CHECKOUTS, ERRORS, REVENUE, spec_with, timeouts


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


def test_latency_buckets_coarser_than_max_ratio_are_named():
    traffic = Traffic(200, 0.01, latency_buckets={"p99": (0.1, 0.25)})
    plan = plan_gates(spec_with(), None, None, traffic)
    assert ("latency check p99: stable's p99 lies in (0.1 s, 0.25 s], so a regression smaller than x2.5 there "
            "cannot be shown (max_ratio 1.1); add histogram buckets between 0.1 s and 0.25 s") in plan.warnings
    fine = plan_gates(spec_with(), None, None, Traffic(200, 0.01, latency_buckets={"p99": (0.2, 0.21)}))
    assert fine.warnings == ()
