"""Release specs: one YAML file per service, validated into typed objects before any DAG is built.

``load_spec(path)`` returns a ``ReleaseSpec`` or raises ``SpecError`` whose message names the file
and the field, e.g. ``include/releases/web.yaml: steps[2]=120: must be a percentage, strictly
increasing, ending at 100``. No Airflow import here.

- ``fields``: the strict base model, durations, name and version patterns, action templates;
- ``checks``: the checks a gate judges, one model per ``kind``, and the sample-ratio check;
- ``hooks``: the actions (deploy, promote, after_promote, rollback), one model per ``type``;
- ``release``: ``ReleaseSpec`` and its parts (backends, approval);
- ``validation``: what needs the whole spec, and how every issue is rendered;
- ``loading``: reading the file, strict YAML, ``parse_spec`` and ``load_spec``;
- ``run_conf``: ``RunConf`` and ``resolve_run_conf``, one DAG run's conf checked against its spec.
"""

from canary_operators.spec.checks import (
    BusinessCheck,
    Check,
    ErrorRateCheck,
    LatencyCheck,
    Policy,
    ResourceCheck,
    SampleRatioSpec,
)
from canary_operators.spec.fields import (
    DEFAULT_STEPS,
    MAX_SPEC_BYTES,
    MAX_TAG_LENGTH,
    METRIC_NAME_PATTERN,
    NAME_PATTERN,
    STEPS_RULE,
    TEMPLATE_FIELDS,
    VERSION_PATTERN,
    VERSION_SCHEMA_PATTERN,
    Duration,
    Template,
)
from canary_operators.spec.hooks import (
    CommandHook,
    EcsDeployHook,
    EcsScaleHook,
    Hook,
    K8sDeployHook,
    K8sScaleHook,
    WebhookHook,
)
from canary_operators.spec.loading import display_path, load_spec, parse_spec, read_spec_text
from canary_operators.spec.release import ApprovalSpec, BackendSpec, ReleaseSpec
from canary_operators.spec.run_conf import CONF_KEYS, RunConf, resolve_run_conf

__all__ = [
    "CONF_KEYS", "DEFAULT_STEPS", "MAX_SPEC_BYTES", "MAX_TAG_LENGTH", "METRIC_NAME_PATTERN", "NAME_PATTERN",
    "STEPS_RULE", "TEMPLATE_FIELDS", "VERSION_PATTERN", "VERSION_SCHEMA_PATTERN",
    "ApprovalSpec", "BackendSpec", "BusinessCheck", "Check", "CommandHook", "Duration", "EcsDeployHook",
    "EcsScaleHook", "ErrorRateCheck", "Hook", "K8sDeployHook", "K8sScaleHook", "LatencyCheck", "Policy",
    "ReleaseSpec", "ResourceCheck", "RunConf", "SampleRatioSpec", "Template", "WebhookHook",
    "display_path", "load_spec", "parse_spec", "read_spec_text", "resolve_run_conf",
]
