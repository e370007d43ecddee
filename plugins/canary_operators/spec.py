"""Release specs: one YAML file per service, validated into typed objects before any DAG is built.

``load_spec(path)`` returns a ``ReleaseSpec`` or raises ``SpecError`` whose message names the file
and the field, e.g. ``include/releases/web.yaml: steps[2]=120: must be a percentage, strictly
increasing, ending at 100``. No Airflow import here.
"""

from __future__ import annotations

import math
import os
import re
import stat
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from canary_operators.durations import parse_duration
from canary_operators.exceptions import SpecError

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
# Versions end up in PromQL label matchers, webhook bodies and command arguments.
# Always ``fullmatch``: Python's ``$`` also matches before a trailing newline.
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
# The same rule for JSON schema (the trigger form, checked by Python's re.search and by the UI's
# JavaScript): ``(?![\s\S])`` is "end of text" in both, where ``$`` would let "v1\n" through.
VERSION_SCHEMA_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}(?![\s\S])"
MAX_SPEC_BYTES = 1024 * 1024
MAX_TAG_LENGTH = 100  # Airflow's limit for a DAG tag
METRIC_NAME_PATTERN = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
DEFAULT_STEPS = [1, 5, 25, 50, 100]
STEPS_RULE = "must be a percentage, strictly increasing, ending at 100"

Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BackendSpec(_Strict):
    """Which backend to use (``type``), how to reach it (``conn_id``) and its own ``settings``."""

    type: str
    conn_id: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)


Policy = Literal["rollback", "hold", "ignore"]


class _Check(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    min_requests: int = Field(default=100, ge=0)
    # Replaces the built-in query. ``$selector`` and ``$window`` are filled per arm.
    query: str | None = None
    # False-rollback rate of this check's anytime-valid test, however often the gate looks.
    alpha: float = Field(default=0.01, gt=0, lt=0.5)
    # A critical check that fails rolls back at once; non-critical ones count towards min_score.
    critical: bool = True
    # Checks whose provider gives one number per period (a percentile, a resource, a custom query,
    # an amount) are judged by a sequential test on paired periods; it needs this many first.
    min_periods: int = Field(default=3, ge=1)
    # What to do when a condition lasts until the gate decides (the gate timeout, a metrics
    # backend down for max_provider_outage, or a query the backend rejects): rollback (fail the
    # gate), hold (wait up to twice the gate timeout), or ignore (leave this check out).
    on_no_data: Policy = "rollback"
    on_error: Policy = "rollback"
    on_inconclusive: Policy = "rollback"


class ErrorRateCheck(_Check):
    kind: Literal["error_rate"]
    max_increase_pp: float = Field(default=0.5, ge=0, le=100)
    # A pass needs evidence that the canary is within the tolerance; the chance of passing a
    # canary that is in fact beyond it is at most pass_alpha.
    pass_alpha: float = Field(default=0.05, gt=0, lt=0.5)


class LatencyCheck(_Check):
    kind: Literal["latency"]
    quantile: Literal[0.5, 0.95, 0.99] = 0.99
    max_ratio: float = Field(default=1.10, gt=0)


class BusinessCheck(_Check):
    """A counter per version, compared per request (e.g. checkouts per request)."""

    kind: Literal["business"]
    # Prometheus names, or Datadog's dotted ones (checkout.completed)
    metric: str | None = Field(default=None, pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:.]*$")
    min_ratio: float | None = Field(default=None, gt=0)
    max_ratio: float | None = Field(default=None, gt=0)
    # count: the metric counts events (checkouts), so per request it is a Poisson rate.
    # amount: it sums amounts (revenue in any unit); judged on paired per-period ratios, so the
    # unit (dollars or cents) cannot change the verdict.
    unit: Literal["count", "amount"] = "count"


class ResourceCheck(_Check):
    kind: Literal["resource"]
    resource: Literal["cpu", "memory"]
    max_ratio: float = Field(default=1.5, gt=0)


Check = Annotated[
    Union[ErrorRateCheck, LatencyCheck, BusinessCheck, ResourceCheck], Field(discriminator="kind")
]


class CommandHook(_Strict):
    """Run a command (no shell). ``{version}``, ``{stable_version}``, ``{release}`` are filled in."""

    type: Literal["command"]
    command: list[Template] = Field(min_length=1)
    timeout: Duration = 300.0


class WebhookHook(_Strict):
    """POST a JSON body to an Airflow HTTP connection (Flagger-style webhook)."""

    type: Literal["webhook"]
    conn_id: str
    endpoint: str = Field(default="/", pattern=r"^/")
    timeout: Duration = 30.0


class EcsDeployHook(_Strict):
    """Register a task definition revision whose ``container`` runs ``image`` (``{version}`` filled
    in), point ``service`` at it, and wait until the service is stable."""

    type: Literal["ecs_deploy"]
    conn_id: str = "aws_default"
    cluster: str = Field(min_length=1)
    service: str = Field(min_length=1)
    container: str = Field(min_length=1)
    image: str = Field(min_length=1)  # e.g. "123.dkr.ecr.eu-west-1.amazonaws.com/web:{version}"
    desired_count: int | None = Field(default=None, ge=0)  # None keeps the service's count
    wait: bool = True
    timeout: Duration = 600.0


class EcsScaleHook(_Strict):
    """Set an ECS service's desired count (0 to scale the canary down) and wait until stable."""

    type: Literal["ecs_scale"]
    conn_id: str = "aws_default"
    cluster: str = Field(min_length=1)
    service: str = Field(min_length=1)
    desired_count: int = Field(default=0, ge=0)
    wait: bool = True
    timeout: Duration = 600.0


_K8S_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"  # RFC 1123 subdomain
_K8S_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"  # RFC 1123 label (namespaces, containers)


TEMPLATE_FIELDS = ("version", "stable_version", "release")
_TEMPLATE_HELP = "use {version}, {stable_version} or {release}, and write literal braces as {{ and }}"


def _template(value: Any) -> Any:
    """A ``str.format`` template with only the placeholders actions fill in, checked at load so
    that ``{versoin}``, ``{0}`` or a JSON argument fails here and not in the deploy or rollback."""
    if isinstance(value, str):
        from string import Formatter

        try:
            parts = list(Formatter().parse(value))
        except ValueError as e:
            raise ValueError(f"not a valid template ({e}); {_TEMPLATE_HELP}") from None
        for _, name, spec, conversion in parts:
            if name is None:
                continue
            if name not in TEMPLATE_FIELDS:
                shown = "{" + name + "}" if name.strip() else "{}"
                raise ValueError(f"unknown placeholder {shown}; {_TEMPLATE_HELP}")
            if spec or conversion:
                raise ValueError(f"placeholder {{{name}}} takes no format spec or conversion; {_TEMPLATE_HELP}")
    return value


_image_template = _template
Template = Annotated[str, BeforeValidator(_template)]


class K8sDeployHook(_Strict):
    """Set ``container``'s image in a Deployment (``{version}``, ``{stable_version}``, ``{release}``
    filled in), optionally its replicas, and wait until the Deployment is ready."""

    type: Literal["k8s_deploy"]
    conn_id: str = "kubernetes_default"
    namespace: str = Field(pattern=_K8S_LABEL)
    deployment: str = Field(pattern=_K8S_NAME)
    container: str = Field(pattern=_K8S_LABEL)
    image: Annotated[str, BeforeValidator(_image_template)] = Field(min_length=1)  # "registry.example/web:{version}"
    replicas: int | None = Field(default=None, ge=0)  # None keeps the Deployment's count
    wait: bool = True
    timeout: Duration = 600.0


class K8sScaleHook(_Strict):
    """Set a Deployment's replicas (0 scales the canary down) and wait until it has settled."""

    type: Literal["k8s_scale"]
    conn_id: str = "kubernetes_default"
    namespace: str = Field(pattern=_K8S_LABEL)
    deployment: str = Field(pattern=_K8S_NAME)
    replicas: int = Field(default=0, ge=0)
    wait: bool = True
    timeout: Duration = 300.0


Hook = Annotated[
    Union[CommandHook, WebhookHook, EcsDeployHook, EcsScaleHook, K8sDeployHook, K8sScaleHook], Field(discriminator="type")
]


class SampleRatioSpec(_Strict):
    """The canary's share of requests must match the weight that was set (± tolerance, relative)."""

    enabled: bool = True
    tolerance: float = Field(default=0.2, gt=0, lt=1)  # 0.2: at 5% weight, 4%..6% is fine
    alpha: float = Field(default=0.001, gt=0, lt=0.5)
    min_requests: int = Field(default=200, ge=0)
    # A failing split must last this long over consecutive looks: one missed scrape at the
    # window's start skews a short window's counts, and a gap in scraping says nothing of routing.
    confirm_seconds: Duration = Field(default=30.0, ge=0)
    # Baseline requests in the step with the canary showing none at all, before the canary is
    # taken for unobserved (wrong version label, not scraped): roll back.
    unobserved_after: int = Field(default=300, ge=1)


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


def _default_checks() -> list:
    return [ErrorRateCheck(name="error_rate", kind="error_rate"), LatencyCheck(name="p99", kind="latency")]


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
    router: BackendSpec
    metrics: BackendSpec
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
    checks: list[Check] = Field(default_factory=_default_checks, min_length=1)
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

    @property
    def dag_id(self) -> str:
        return f"canary_{self.name}"

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


# ---------------------------------------------------------------------------------------------
# Loading and error formatting


def _loc(parts: tuple) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _issue(loc: str, value: Any, message: str, show_value: bool = True) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    shown = f"={value}" if show_value and isinstance(value, (int, float, str)) and not isinstance(value, bool) else ""
    return f"{loc}{shown}: {message}"


def _pydantic_issues(err: ValidationError) -> list[str]:
    issues = []
    for e in err.errors():
        loc = _without_union_tags(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        issues.append(_issue(_loc(loc) or "(top level)", e.get("input"), msg, e["type"] != "extra_forbidden"))
    return issues


_UNION_TAGS = {"error_rate", "latency", "business", "resource", "command", "webhook", "ecs_deploy", "ecs_scale",
               "k8s_deploy", "k8s_scale"}
_UNION_FIELDS = {"deploy", "promote", "after_promote", "rollback"}


def _without_union_tags(loc: tuple) -> tuple:
    """Drop the tag pydantic adds after a tagged union (checks[0].latency.quantile → checks[0].quantile)."""
    parts = list(loc)
    if len(parts) > 2 and parts[0] == "checks" and isinstance(parts[1], int) and parts[2] in _UNION_TAGS:
        del parts[2]
    elif len(parts) > 1 and parts[0] in _UNION_FIELDS and parts[1] in _UNION_TAGS:
        del parts[1]
    return tuple(parts)


def _semantic_issues(spec: ReleaseSpec) -> list[str]:
    from canary_operators.metrics import provider_class
    from canary_operators.routers import router_class

    issues = []
    previous = 0
    for i, step in enumerate(spec.steps):
        if not (0 < step <= 100) or step <= previous or (i == len(spec.steps) - 1 and step != 100):
            issues.append(_issue(f"steps[{i}]", step, STEPS_RULE))
            break
        previous = step
    if not spec.steps:
        issues.append(_issue("steps", "[]", STEPS_RULE, show_value=False))
    elif not spec.gate_steps:
        issues.append(_issue("steps", str(spec.steps), "needs at least one step below 100: with no gate before "
                             "promotion, the new version would get all traffic unjudged", show_value=False))
    if spec.settle_time >= spec.bake_time:
        issues.append(_issue("settle_time", spec.settle_time, f"must be shorter than bake_time ({spec.bake_time:g}s)"))
    if spec.gate_timeout <= spec.bake_time:
        issues.append(_issue("gate_timeout", spec.gate_timeout, f"must be longer than bake_time ({spec.bake_time:g}s)"))
    if spec.poke_interval <= 0:
        issues.append(_issue("poke_interval", spec.poke_interval, "must be more than 0"))
    if spec.stale_after is not None and spec.stale_after <= 2 * spec.poke_interval:
        issues.append(_issue("stale_after", spec.stale_after, f"must be longer than two gate looks "
                             f"(2 × poke_interval = {2 * spec.poke_interval:g}s), or the guard resets live gates"))
    seen: set[str] = set()
    for i, check in enumerate(spec.checks):
        if check.name in seen:
            issues.append(_issue(f"checks[{i}].name", check.name, "duplicate check name"))
        seen.add(check.name)
        if isinstance(check, BusinessCheck):
            if check.min_ratio is None and check.max_ratio is None:
                issues.append(_issue(f"checks[{i}]", None, "a business check needs min_ratio or max_ratio"))
            if check.metric is None and check.query is None:
                issues.append(_issue(f"checks[{i}]", None, "a business check needs metric or query"))
    if spec.approval is not None:
        for i, step in enumerate(spec.approval.before):
            if step not in spec.steps:
                issues.append(_issue(f"approval.before[{i}]", step, f"must be one of the steps {spec.steps}"))
    for version_field in ("default_version", "stable_version"):
        value = getattr(spec, version_field)
        if value is not None and not VERSION_PATTERN.fullmatch(value):
            issues.append(_issue(version_field, value, f"must match {VERSION_PATTERN.pattern}"))
    if spec.schedule is not None:
        issues.extend(_schedule_issues(spec.schedule))
    for field, lookup in (("router", router_class), ("metrics", provider_class)):
        backend: BackendSpec = getattr(spec, field)
        try:
            cls = lookup(backend.type)
        except SpecError as e:
            issues.append(_issue(f"{field}.type", backend.type, str(e)))
            continue
        issues.extend(_issue(f"{field}.settings{loc}", value, "must be a finite number")
                      for loc, value in _non_finite(backend.settings))
        try:
            cls.settings_model.model_validate(backend.settings, strict=True)
        except ValidationError as e:
            issues.extend(f"{field}.settings.{i}" for i in _pydantic_issues(e))
        if cls.needs_connection and not backend.conn_id:
            issues.append(_issue(f"{field}.conn_id", None, f"required by {backend.type}"))
        if field == "router" and spec.promote is None and not getattr(cls, "promotes_natively", False):
            issues.append(_issue("promote", None, f"required: router {backend.type} cannot promote by itself, and "
                                 "without a promote action the new version would serve all traffic from the canary "
                                 "slot; give the action that puts the version into the stable slot"))
    return issues


def _non_finite(data: Any, loc: str = ""):
    """Every NaN or infinite number in free-form ``settings``, with where it is."""
    if isinstance(data, float) and not math.isfinite(data):
        yield loc, str(data)
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _non_finite(value, f"{loc}.{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _non_finite(value, f"{loc}[{i}]")


def _schedule_issues(schedule: str) -> list[str]:
    if schedule.startswith("@"):
        known = {"@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually"}
        return [] if schedule in known else [_issue("schedule", schedule, f"unknown preset; use one of {sorted(known)}")]
    from croniter import croniter

    return [] if croniter.is_valid(schedule) else [_issue("schedule", schedule, "not a valid cron expression")]


def display_path(path: Path) -> str:
    """The path as a user names it (a symlink by its own name): relative to the project root when inside it."""
    path = Path(path).parent.resolve() / Path(path).name
    for root in path.parents:
        if (root / "dags").is_dir() and (root / "include").is_dir():
            return str(path.relative_to(root))
    return str(path)


def parse_spec(data: Any, source: str) -> ReleaseSpec:
    """Validate already-loaded YAML data. ``source`` names the file in errors."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: (top level): must be a mapping of fields, got {type(data).__name__}")
    if "max_provider_errors" in data:
        raise SpecError(f"{source}: max_provider_errors: replaced by max_provider_outage, a time "
                        "(default 60s), so it no longer depends on poke_interval")
    try:
        spec = ReleaseSpec.model_validate(data, strict=True)  # no booleans or strings as numbers
    except ValidationError as e:
        raise SpecError("\n".join(f"{source}: {issue}" for issue in _pydantic_issues(e))) from None
    issues = _semantic_issues(spec)
    if issues:
        raise SpecError("\n".join(f"{source}: {issue}" for issue in issues))
    return spec


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, except that a key given twice in one mapping is an error (a second
    ``checks:`` block must not silently replace the first). A few aliases are fine; many are a
    "billion laughs" that would blow up in memory and time."""

    max_aliases = 100

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases = getattr(self, "aliases", 0) + 1
            if self.aliases > self.max_aliases:
                raise yaml.composer.ComposerError(None, None, f"more than {self.max_aliases} aliases (*name)",
                                                  self.peek_event().start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                continue  # an unhashable key: construct_mapping below reports it
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first.start_mark.line + 1})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def read_spec_text(path: Path, source: str) -> str:
    """The file's text, refusing what is not a plain, small, UTF-8 file inside its folder.

    Checked with ``os.stat`` before opening, and opened non-blocking, so a named pipe or a
    device never hangs the DAG processor."""
    folder = path.parent.resolve()
    try:
        if path.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(folder):
                raise SpecError(f"{source}: (file): a symlink that leaves the releases folder ({folder}); "
                                "keep the spec itself in the folder")
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise SpecError(f"{source}: (file): not a regular file; a spec must be a plain YAML file")
        if info.st_size > MAX_SPEC_BYTES:
            raise SpecError(f"{source}: (file): {info.st_size} bytes; a spec may have at most {MAX_SPEC_BYTES} bytes")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):  # replaced between stat and open
                raise SpecError(f"{source}: (file): not a regular file; a spec must be a plain YAML file")
            raw = fh.read(MAX_SPEC_BYTES + 1)
    except OSError as e:
        raise SpecError(f"{source}: (file): cannot read: {e.strerror or e}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"{source}: (file): more than {MAX_SPEC_BYTES} bytes; a spec may have at most {MAX_SPEC_BYTES}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise SpecError(f"{source}: (file): not UTF-8: byte 0x{raw[e.start]:02x} at line {line} "
                        f"(offset {e.start}); save the spec as UTF-8") from None


def load_spec(path: Path | str) -> ReleaseSpec:
    """Read and validate one release spec file."""
    path = Path(path)
    source = display_path(path)
    text = read_spec_text(path, source)
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise SpecError(f"{source}: {where}not valid YAML: {getattr(e, 'problem', e)}") from None
    except RecursionError:
        raise SpecError(f"{source}: (top level): nested too deeply to be a release spec") from None
    try:
        spec = parse_spec(data, source)
    except RecursionError:
        raise SpecError(f"{source}: (top level): nested too deeply to be a release spec") from None
    if path.stem != spec.name:
        raise SpecError(f"{source}: name={spec.name}: must match the file name ({path.stem})")
    return spec


# ---------------------------------------------------------------------------------------------
# A run's conf


class RunConf(_Strict):
    """What one DAG run releases and how, resolved from conf, the last promotion and the spec."""

    release: str
    version: str
    stable_version: str
    steps: list[int] = Field(default_factory=list)  # the weights this run moves through
    bake_time: float | None = None  # overrides the spec's minimum bake for this run
    dry_run: bool = False  # decide and report, move no traffic, run no action
    approval: bool = False  # ask a person at the approval points (the spec's, or before 100%)
    force_reset: bool = False  # preflight may put a canary left by another run back to 0% first

    def takes_step(self, weight: int) -> bool:
        return not self.steps or weight in self.steps


CONF_KEYS = {"version", "stable_version", "steps", "bake_time", "dry_run", "approval", "force_reset"}


def resolve_run_conf(
    spec: ReleaseSpec, conf: dict | None, last_promoted: str | None = None, candidate: str | None = None
) -> RunConf:
    """Version: conf > candidate (scheduled runs) > spec.default_version.
    Stable: conf > last promoted > spec.stable_version. Raises SpecError naming the conf key."""
    conf = {k: v for k, v in (conf or {}).items() if v is not None}
    unknown = sorted(set(conf) - CONF_KEYS)
    if unknown:
        raise SpecError(f"conf.{unknown[0]}: unknown key; allowed: {sorted(CONF_KEYS)}")
    version = conf.get("version") or candidate or spec.default_version
    stable = conf.get("stable_version") or last_promoted or spec.stable_version
    for key, value in (("version", version), ("stable_version", stable)):
        if value is None:
            raise SpecError(f"conf.{key}: required (the spec sets no default)")
        if not isinstance(value, str) or not VERSION_PATTERN.fullmatch(value):
            raise SpecError(f"conf.{key}={value!r}: must match {VERSION_PATTERN.pattern}")
    # Conf may only make a release safer: skip steps while a gate remains, lengthen the bake,
    # add approval. It may not remove the spec's gates, approval or bake time.
    steps = conf.get("steps") or list(spec.steps)
    if (not isinstance(steps, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in steps)
            or steps != sorted(set(steps)) or steps[-1] != 100 or not set(steps) <= set(spec.steps)):
        raise SpecError(f"conf.steps={steps!r}: must be strictly increasing, end at 100, and use only the spec's steps {spec.steps}")
    if len(steps) < 2:
        raise SpecError(f"conf.steps={steps!r}: must keep at least one step below 100, so a gate judges the "
                        "canary before it gets all traffic")
    bake_time = conf.get("bake_time")
    if bake_time is not None:
        if (isinstance(bake_time, bool) or not isinstance(bake_time, (int, float)) or bake_time != bake_time
                or not spec.bake_time <= bake_time < spec.gate_timeout):
            raise SpecError(f"conf.bake_time={bake_time!r}: must be seconds from the spec's bake_time ({spec.bake_time:g}; "
                            f"conf may only lengthen it) up to below gate_timeout ({spec.gate_timeout:g})")
    for key in ("dry_run", "approval", "force_reset"):
        if key in conf and not isinstance(conf[key], bool):
            raise SpecError(f"conf.{key}={conf[key]!r}: must be true or false")
    required = spec.approval is not None and spec.approval.required
    if required and conf.get("approval") is False:
        raise SpecError("conf.approval=false: the spec requires approval, and conf may only add safety, not remove it")
    approval = required or conf.get("approval", False)
    return RunConf(release=spec.name, version=version, stable_version=stable, steps=steps,
                   bake_time=None if bake_time is None else float(bake_time),
                   dry_run=conf.get("dry_run", False), approval=approval, force_reset=conf.get("force_reset", False))
