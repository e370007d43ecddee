"""A corpus of malformed release specs. Each fault sits in ``bad.yaml`` beside a good spec
(``alpha.yaml``) and must give exactly one placeholder DAG whose error names the file and the
field, while ``canary_alpha`` and ``canary_guard`` still load. No fault may raise out of the
factory: with a real dag-processor that would hide every canary DAG.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import pytest
import yaml

from canary_operators.dag_factory import GUARD_DAG_ID, INVALID_TAG, build_dags

GOOD = {
    "name": "alpha",
    "stable_version": "v1",
    "router": {"type": "haproxy", "conn_id": "alpha_haproxy", "settings": {"backend": "alpha"}},
    "metrics": {"type": "prometheus", "conn_id": "prom", "settings": {"labels": {"job": "alpha"}}},
    "steps": [10, 100],
    "bake_time": "30s",
    "gate_timeout": "5m",
    "promote": {"type": "webhook", "conn_id": "alpha_admin", "endpoint": "/deploy"},
}


def bad_spec(**changes) -> dict:
    """The good spec renamed ``bad``, on its own HAProxy backend, with ``changes`` (None deletes)."""
    spec = copy.deepcopy(GOOD)
    spec["name"] = "bad"
    spec["router"]["settings"]["backend"] = "bad"
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


def text(**changes) -> str:
    return yaml.safe_dump(bad_spec(**changes), sort_keys=False)


def cmd(*argv: str) -> dict:
    return {"type": "command", "command": list(argv)}


# (id, what to put in the folder, the text that must follow the file name in the error).
# A writer is a YAML text for bad.yaml, or a callable(folder) for faults of the file itself.
def fifo(folder: Path) -> None:
    os.mkfifo(folder / "bad.yaml")


def symlink_to_device(folder: Path) -> None:
    (folder / "bad.yaml").symlink_to("/dev/zero")


def symlink_outside(folder: Path) -> None:
    outside = folder.parent / "outside.yaml"
    outside.write_text(text())
    (folder / "bad.yaml").symlink_to(outside)


def directory(folder: Path) -> None:
    (folder / "bad.yaml").mkdir()


def twins(folder: Path) -> None:
    (folder / "bad.yaml").write_text(text())
    (folder / "bad.yml").write_text(text())


def upper_suffix(folder: Path) -> None:
    (folder / "bad.YAML").write_text(text())


def not_utf8(folder: Path) -> None:
    (folder / "bad.yaml").write_bytes(text().encode() + b"# caf\xe9\n")


def too_big(folder: Path) -> None:
    (folder / "bad.yaml").write_text(text() + "#" + "x" * (1024 * 1024) + "\n")


DUPLICATE_CHECKS = "checks: []\n" + text(checks=[{"name": "errors", "kind": "error_rate"}])

FAULTS = [
    # the file itself
    ("named pipe", fifo, "(file): not a regular file"),
    ("symlink to a device", symlink_to_device, "(file): a symlink that leaves the releases folder"),
    ("symlink out of the folder", symlink_outside, "(file): a symlink that leaves the releases folder"),
    ("a directory", directory, "(file): not a regular file"),
    ("yml and yaml twins", twins, "(file name): bad.yaml and bad.yml both define the release"),
    ("upper-case suffix", upper_suffix, "(file name): suffix .YAML is not read"),
    ("not UTF-8", not_utf8, "(file): not UTF-8: byte 0xe9"),
    ("over 1 MB", too_big, "(file):"),
    # YAML
    ("not YAML", "name: bad\nrouter: [\n", "line 3: not valid YAML"),
    ("a list, not a mapping", "- name: bad\n", "(top level): must be a mapping"),
    ("empty file", "", "(top level): must be a mapping"),
    ("duplicate key", DUPLICATE_CHECKS, "not valid YAML: duplicate key 'checks' (first at line 1)"),
    ("deeply nested", text() + "description: " + "[" * 5000 + "]" * 5000 + "\n", "(top level): nested too deeply"),
    ("billion laughs", "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(12)) + text(),
     "not valid YAML: more than 100 aliases"),
    # fields
    ("unknown field", text(stepz=[10, 100]), "stepz: unknown field"),
    ("missing metrics", text(metrics=None), "metrics: Field required"),
    ("name not the file name", text(name="other"), "name=other: must match the file name"),
    ("name pattern", text(name="Bad"), "name=Bad: String should match pattern"),
    ("name with trailing newline", text(name="bad\n"), "name=bad\n: String should match pattern"),
    ("description not text", text(description=5), "description=5: Input should be a valid string"),
    ("step above 100", text(steps=[5, 120, 100]), "steps[1]=120: must be a percentage"),
    ("steps not increasing", text(steps=[50, 25, 100]), "steps[1]=25: must be a percentage"),
    ("steps only 100", text(steps=[100]), "steps: needs at least one step below 100"),
    ("boolean step", text(steps=[True, 100]), "steps[0]: Input should be a valid integer"),
    ("string step", text(steps=["5", 100]), "steps[0]=5: Input should be a valid integer"),
    ("float step", text(steps=[5.5, 100]), "steps[0]=5.5: Input should be a valid integer"),
    ("infinite gate timeout", "gate_timeout: .inf\n" + text(gate_timeout=None), "gate_timeout=inf: inf is not a finite duration"),
    ("NaN bake time", "bake_time: .nan\n" + text(bake_time=None), "bake_time=nan: nan is not a finite duration"),
    ("1e20 seconds", "bake_time: 1.0e+20\n" + text(bake_time=None), "bake_time=100000000000000000000: 1e+20 is longer than 7 days"),
    ("over 7 days", text(rollback_deadline="200h"), "rollback_deadline=200h: '200h' is longer than 7 days"),
    ("negative duration", text(bake_time=-5), "bake_time=-5: -5 is negative"),
    ("boolean duration", text(poke_interval=True), "poke_interval: True is not a duration"),
    ("duration with unknown unit", text(bake_time="3d"), "bake_time=3d: '3d' is not a duration"),
    ("zero poke interval", text(poke_interval=0), "poke_interval=0: must be more than 0"),
    ("settle not below bake", text(settle_time="30s"), "settle_time=30: must be shorter than bake_time"),
    ("gate timeout not above bake", text(gate_timeout="10s"), "gate_timeout=10: must be longer than bake_time"),
    ("stale_after too short", text(stale_after="30s"), "stale_after=30: must be longer than two gate looks"),
    ("tag over 100 characters", text(tags=["x" * 101]), "tags[0]=" + "x" * 101 + ": String should have at most 100 characters"),
    ("empty tag", text(tags=[""]), "tags[0]=: String should have at least 1 character"),
    ("version with trailing newline", text(default_version="v2\n"), "default_version=v2\n: must match"),
    ("version with a space", text(stable_version="v 1"), "stable_version=v 1: must match"),
    ("retries as a string", text(retries="3"), "retries=3: Input should be a valid integer"),
    ("negative retries", text(retries=-1), "retries=-1: Input should be greater than or equal to 0"),
    ("zero provider outage", text(max_provider_outage=0), "max_provider_outage=0: Input should be greater than 0"),
    ("old provider errors field", text(max_provider_errors=3), "max_provider_errors: replaced by max_provider_outage"),
    ("unknown plan", text(plan="always"), "plan=always: Input should be"),
    ("min_score above 1", text(min_score=2), "min_score=2: Input should be less than or equal to 1"),
    ("unknown evidence_at", text(evidence_at="sometimes"), "evidence_at=sometimes: Input should be"),
    ("bad cron", text(schedule="every day"), "schedule=every day: not a valid cron expression"),
    ("unknown preset", text(schedule="@sometimes"), "schedule=@sometimes: unknown preset"),
    ("unknown router", text(router={"type": "nginx", "conn_id": "x"}), "router.type=nginx: unknown router type"),
    ("router without connection", text(router={"type": "haproxy", "settings": {"backend": "bad"}}), "router.conn_id: required by haproxy"),
    ("unknown router setting", text(router={"type": "haproxy", "conn_id": "h", "settings": {"backend": "bad", "weight": 1}}),
     "router.settings.weight: unknown field"),
    ("infinite router setting", text(router={"type": "haproxy", "conn_id": "h", "settings": {"backend": "bad", "timeout_seconds": float("inf")}}),
     "router.settings.timeout_seconds=inf: must be a finite number"),
    ("string number in settings", text(router={"type": "haproxy", "conn_id": "h", "settings": {"backend": "bad", "timeout_seconds": "3"}}),
     "router.settings.timeout_seconds=3: Input should be a valid number"),
    ("label name with trailing newline", text(metrics={"type": "prometheus", "conn_id": "p", "settings": {"labels": {"job\n": "bad"}}}),
     "metrics.settings.labels: label name 'job\\n' must match"),
    ("datadog tag with trailing newline", text(metrics={"type": "datadog", "conn_id": "d", "settings": {"tags": {"service": "web\n"}}}),
     "metrics.settings.tags: tag value 'web\\n' must be 1 to 200"),
    ("same traffic target as alpha", text(router=copy.deepcopy(GOOD["router"])), "router: the same traffic target as alpha.yaml"),
    ("no checks", text(checks=[]), "checks: List should have at least 1 item"),
    ("unknown check kind", text(checks=[{"name": "x", "kind": "vibes"}]), "checks[0]: Input tag 'vibes'"),
    ("duplicate check names", text(checks=[{"name": "e", "kind": "error_rate"}, {"name": "e", "kind": "latency"}]),
     "checks[1].name=e: duplicate check name"),
    ("alpha out of range", text(checks=[{"name": "e", "kind": "error_rate", "alpha": 0.9}]), "checks[0].alpha=0.9: Input should be less than 0.5"),
    ("infinite ratio", text(checks=[{"name": "p", "kind": "latency", "max_ratio": float("inf")}]),
     "checks[0].max_ratio=inf: Input should be a finite number"),
    ("critical as a string", text(checks=[{"name": "e", "kind": "error_rate", "critical": "yes"}]),
     "checks[0].critical=yes: Input should be a valid boolean"),
    ("business check without bounds", text(checks=[{"name": "b", "kind": "business", "metric": "orders_total"}]),
     "checks[0]: a business check needs min_ratio or max_ratio"),
    ("sample ratio tolerance", text(sample_ratio={"tolerance": 1.5}), "sample_ratio.tolerance=1.5: Input should be less than 1"),
    ("approval before a missing step", text(approval={"before": [30]}), "approval.before[0]=30: must be one of the steps"),
    ("misspelt placeholder", text(deploy=cmd("deploy", "{versoin}")), "deploy.command[1]={versoin}: unknown placeholder {versoin}"),
    ("positional placeholder", text(deploy=cmd("deploy", "{0}")), "deploy.command[1]={0}: unknown placeholder {0}"),
    ("empty placeholder", text(deploy=cmd("deploy", "{}")), "deploy.command[1]={}: unknown placeholder {}"),
    ("JSON argument", text(rollback=cmd("notify", '{"spec": 1}')), "rollback.command[1]={\"spec\": 1}: unknown placeholder {\"spec\"}"),
    ("lone brace", text(rollback=cmd("notify", "{")), "rollback.command[1]={: not a valid template"),
    ("format spec", text(deploy=cmd("deploy", "{version!r}")), "deploy.command[1]={version!r}: placeholder {version} takes no format spec"),
    ("attribute placeholder", text(deploy=cmd("deploy", "{version.upper}")), "deploy.command[1]={version.upper}: unknown placeholder {version.upper}"),
    ("unknown action type", text(deploy={"type": "ansible"}), "deploy: Input tag 'ansible'"),
    ("k8s image placeholder", text(deploy={"type": "k8s_deploy", "namespace": "web", "deployment": "web", "container": "web",
                                           "image": "web:{tag}"}), "deploy.image=web:{tag}: unknown placeholder {tag}"),
]


def test_the_corpus_has_at_least_40_distinct_faults():
    assert len({name for name, _, _ in FAULTS}) == len(FAULTS) >= 40


@pytest.mark.parametrize("name,writer,expected", FAULTS, ids=[f[0] for f in FAULTS])
def test_a_malformed_spec_gives_one_clear_error_and_the_others_still_load(tmp_path, monkeypatch, name, writer, expected):
    monkeypatch.delenv("CANARY_GUARD_SCHEDULE", raising=False)
    folder = tmp_path / "releases"
    folder.mkdir()
    (folder / "alpha.yaml").write_text(yaml.safe_dump(GOOD, sort_keys=False))
    if callable(writer):
        writer(folder)
    else:
        (folder / "bad.yaml").write_text(writer)

    dags = build_dags(folder)

    placeholder = "canary_bad"
    assert set(dags) == {"canary_alpha", GUARD_DAG_ID, placeholder}
    assert dags["canary_alpha"].task_ids[0] == "preflight"
    guarded = [kw["release_name"] for kw in dags[GUARD_DAG_ID].get_task("reconcile").expand_input.value]
    assert guarded == ["alpha", "bad"]  # a broken file is swept with the spec its last run recorded
    dag = dags[placeholder]
    assert dag.tags == {"canary", INVALID_TAG} and dag.task_ids == ["spec_error"] and dag.schedule is None
    error = dag.get_task("spec_error").error
    lines = error.splitlines() if "\n" not in expected else [error]
    assert all(line.startswith(str(folder)) for line in lines), error  # every issue names the file
    suffix = "YAML" if writer is upper_suffix else "yaml"
    assert re.search(rf"/bad\.{suffix}: (line \d+: )?{re.escape(expected)}", error), error
    assert "Traceback" not in error
    assert error.splitlines()[0] in dag.description


def test_a_missing_releases_folder_is_a_visible_error(tmp_path):
    dags = build_dags(tmp_path / "nowhere")
    assert set(dags) == {"canary_invalid_release_specs"}
    error = dags["canary_invalid_release_specs"].get_task("spec_error").error
    assert f"{tmp_path / 'nowhere'}: (folder): the releases folder does not exist" in error


def test_any_exception_while_loading_is_that_files_error(tmp_path, monkeypatch):
    from canary_operators import dag_factory

    folder = tmp_path / "releases"
    folder.mkdir()
    (folder / "alpha.yaml").write_text(yaml.safe_dump(GOOD, sort_keys=False))
    (folder / "bad.yaml").write_text(text())
    real = dag_factory.load_spec

    def load(path):
        if path.name == "bad.yaml":
            raise KeyError("boom")
        return real(path)

    monkeypatch.setattr(dag_factory, "load_spec", load)
    dags = build_dags(folder)
    assert set(dags) == {"canary_alpha", GUARD_DAG_ID, "canary_bad"}
    assert dags["canary_bad"].get_task("spec_error").error == f"{folder / 'bad.yaml'}: (file): KeyError: 'boom'"


def test_a_task_run_of_the_placeholder_builds_only_it(tmp_path):
    folder = tmp_path / "releases"
    folder.mkdir()
    (folder / "alpha.yaml").write_text(yaml.safe_dump(GOOD, sort_keys=False))
    (folder / "bad.yaml").write_text(text(steps=[5, 120, 100]))
    assert set(build_dags(folder, only_dag_id="canary_bad")) == {"canary_bad"}
    assert set(build_dags(folder, only_dag_id="canary_alpha")) == {"canary_alpha"}


def test_the_placeholder_task_fails_with_the_error(tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    folder = tmp_path / "releases"
    folder.mkdir()
    (folder / "bad.yaml").write_text(text(steps=[5, 120, 100]))
    task = build_dags(folder)["canary_bad"].get_task("spec_error")
    with pytest.raises(AirflowFailException, match=r"bad.yaml: steps\[1\]=120"):
        task.execute({})
