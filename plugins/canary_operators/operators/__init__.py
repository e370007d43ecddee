"""Thin Airflow operators: resolve the backend, call it, log one line, return a small dict."""

from canary_operators.operators.approve import ApproveStep
from canary_operators.operators.complete_rollout import CompleteRollout
from canary_operators.operators.deploy import DeployCanary
from canary_operators.operators.metric_gate import MetricGate
from canary_operators.operators.preflight import Preflight
from canary_operators.operators.promote import Promote
from canary_operators.operators.rollback import Rollback
from canary_operators.operators.shift_traffic import ShiftTraffic

__all__ = ["ApproveStep", "CompleteRollout", "DeployCanary", "MetricGate", "Preflight", "Promote", "Rollback", "ShiftTraffic"]
