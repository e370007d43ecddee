"""The decision as a value: JSON for XCom and one log line."""

from __future__ import annotations

from canary_operators.judge import judge
from tests.judge.data import BAKED, ERRORS, GOOD, P99, counts


def test_decision_serialises_for_xcom_and_logs_one_line():
    d = judge([ERRORS, P99], {**GOOD, "errors": counts("errors", 30, 1000, 40, 20000)}, BAKED)
    as_dict = d.to_dict()
    assert as_dict["outcome"] == "rollback"
    assert isinstance(as_dict["checks"], list)
    first = as_dict["checks"][0]
    assert first["verdict"] == "fail" and first["canary_value"] == 0.03 and first["p_value"] < 0.001
    assert first["bounds"]["baseline_rate"][0] < first["bounds"]["baseline_rate"][1]
    line = d.log_line()
    assert "\n" not in line and line.startswith("ROLLBACK: errors: error rate 3.00%")
    assert "canary query: canary:errors" in line and "[p99] pass" in line
