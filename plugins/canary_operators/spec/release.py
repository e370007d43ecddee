"""The release spec itself: one per service, with its backends, steps, checks, approval and actions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from canary_operators.spec.checks import Check, SampleRatioSpec, default_checks
from canary_operators.spec.fields import DEFAULT_STEPS, MAX_TAG_LENGTH, NAME_PATTERN, Duration, _Strict
from canary_operators.spec.hooks import Hook
from canary_operators.spec.notify import NotifyTarget


class BackendSpec(_Strict):
    """Which backend to use (``type``), how to reach it (``conn_id``) and its own ``settings``."""

    type: str
    conn_id: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)


class ApprovalSpec(_Strict):
    """Ask a person (Airflow's human-in-the-loop) before these steps, with the gates' evidence."""

    before: list[int] = Field(default_factory=lambda: [100])  # 100 = before promotion
    timeout: Duration = 3600.0  # no answer by then → roll back
    hold: Duration = 600.0  # "Hold a bit longer" asks again after this long
    # False: a run asks only when its conf says {"approval": true}; True: every run asks, and
    # conf cannot switch it off.
    required: bool = True
    # Who may answer: user ids as the auth manager gives them (the username with the simple auth
    # manager). Empty: anyone who may edit the DAG's human-in-the-loop details.
    approvers: list[Annotated[str, Field(min_length=1, max_length=250)]] = Field(default_factory=list)


# A target's name: short, since it names the target's task group (``eu.shift_to_25``) and its
# status record (``canary_status__<release>__<target>``).
TARGET_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"


class TargetSpec(_Strict):
    """One place the release goes to (a region, a cluster, a load balancer): its own router and
    metrics, and optional overrides of the spec's defaults. Unset fields inherit the spec's
    (``spec.targets.target_releases``)."""

    name: str = Field(pattern=TARGET_NAME_PATTERN)
    router: BackendSpec | None = None
    metrics: BackendSpec | None = None
    stable_version: str | None = None
    steps: list[int] | None = None  # waves only: a later wave may need fewer steps
    bake_time: Duration | None = None
    gate_timeout: Duration | None = None
    checks: list[Check] | None = None
    deploy: Hook | None = None
    promote: Hook | None = None
    after_promote: Hook | None = None
    rollback: Hook | None = None


class ReleaseSpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    owner: str = "airflow"
    tags: list[Annotated[str, Field(min_length=1, max_length=MAX_TAG_LENGTH)]] = Field(default_factory=list)
    schedule: str | None = None
    default_version: str | None = None
    stable_version: str | None = None
    # Scheduled runs release the version in this Airflow Variable (else default_version).
    candidate_variable: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,250}$")
    # Required unless every target has its own (spec_issues says so).
    router: BackendSpec | None = None
    metrics: BackendSpec | None = None
    steps: list[int] = Field(default_factory=lambda: list(DEFAULT_STEPS))
    bake_time: Duration = 300.0
    gate_timeout: Duration = 900.0
    poke_interval: Duration = 30.0
    # last_gate: earlier gates advance when nothing shows harm; the last gate before promotion
    # needs evidence that every check is within bounds. every_gate: every gate needs it.
    evidence_at: Literal["last_gate", "every_gate"] = "last_gate"
    # deferrable: gates wait in the triggerer and hold no worker slot; poke/reschedule: on a worker.
    gate_mode: Literal["deferrable", "poke", "reschedule"] = "deferrable"
    approval: ApprovalSpec | None = None
    # A check whose metrics backend stays unreachable (or throttles) this long follows its
    # on_error policy. Measured in time, not looks, so it does not depend on poke_interval.
    max_provider_outage: Duration = Field(default=60.0, gt=0)
    # The evidence planner (preflight): reads live traffic and works out how long each gate needs.
    # warn: log it; adapt: also lengthen a gate's timeout to what it needs, up to plan_max_gate_timeout.
    plan: Literal["off", "warn", "adapt"] = "adapt"
    plan_max_gate_timeout: Duration = 3600.0
    retries: int = Field(default=2, ge=0)
    retry_delay: Duration = 10.0
    # The undo retries putting traffic back on stable for this long before it gives up loudly.
    rollback_deadline: Duration = 900.0
    # canary_guard resets a canary whose owning run has not written its status record for this
    # long (paused, stuck, deleted). Default: the longest a healthy step is silent, plus 2 minutes.
    stale_after: Duration | None = None
    checks: list[Check] = Field(default_factory=default_checks, min_length=1)
    sample_ratio: SampleRatioSpec = Field(default_factory=SampleRatioSpec)
    # Share of non-critical checks that must pass (critical checks must always pass).
    min_score: float = Field(default=1.0, ge=0, le=1)
    # Data from the first seconds after a shift is left out: scrapes still straddle the change.
    settle_time: Duration = 5.0
    deploy: Hook | None = None
    promote: Hook | None = None
    # Runs after promote has moved all traffic back to the (now new) stable slot, e.g. scale the
    # canary down. Rollback runs after traffic is back on stable, so it can scale down directly.
    after_promote: Hook | None = None
    rollback: Hook | None = None
    # Who hears about a release, and of which events (spec/notify.py).
    notify: list[NotifyTarget] = Field(default_factory=list)
    # One release across several targets (spec/targets.py): lockstep moves them all to each step
    # together; waves moves one wave after another. abort: all (lockstep's default) rolls back every
    # target that moved, wave (waves' default) only the failing wave.
    targets: list[TargetSpec] = Field(default_factory=list)
    strategy: Literal["lockstep", "waves"] = "lockstep"
    abort: Literal["all", "wave"] | None = None
    waves: list[list[str]] | None = None  # target names per wave; default: one target per wave
    # Set only on the spec derived for one target: the release (and DAG) it belongs to.
    target_of: str | None = None

    @property
    def dag_id(self) -> str:
        return f"canary_{self.target_of or self.name}"

    @property
    def gate_steps(self) -> list[int]:
        """The weights that get a gate: every step below 100 (100 is the promotion)."""
        return [s for s in self.steps if s < 100]

    @property
    def approval_points(self) -> list[int]:
        """Where a run may ask a person: the spec's points, or before 100% when conf adds approval."""
        return list(self.approval.before) if self.approval else [100]

    @property
    def gate_task_timeout(self) -> float:
        """How long a gate may wait at most: the gate timeout (with plan: adapt, the longest the
        evidence planner may give it), twice that when a check may hold."""
        holds = any("hold" in (c.on_no_data, c.on_error, c.on_inconclusive) for c in self.checks)
        longest = max(self.gate_timeout, self.plan_max_gate_timeout) if self.plan == "adapt" else self.gate_timeout
        return (2 if holds else 1) * longest

    @property
    def silence_limit(self) -> float:
        """How long the owning run may go without writing its status record before the guard
        takes it for stuck: ``stale_after``, or the longest silent step (an action, two gate
        looks, an approval hold) plus two minutes of scheduling slack."""
        if self.stale_after is not None:
            return self.stale_after
        silent = [a.timeout for a in (self.deploy, self.promote, self.after_promote, self.rollback)
                  if a is not None and hasattr(a, "timeout")]
        silent += [2 * self.poke_interval, self.approval.hold if self.approval else 0.0]
        return max(silent) + 120.0


