"""Full DAG runs of a Lambda alias release judged on CloudWatch, against moto's server.

Two releases run at the same time, each with its own function (published versions 1 and 2) and
alias ``live`` in moto: a healthy version 2 that is promoted, and a clearly bad one (30% errors
against 1%) that is rolled back. The router is ``lambda_alias``: no deploy or promote action, the
alias itself carries the weights and is moved to the new version on promotion.

What the tests assert comes from moto: the alias's state (``FunctionVersion`` and
``AdditionalVersionWeights``), recorded by a background poller as the DAG changes it. A feeder
thread publishes the alias's metrics as Lambda does (``Invocations`` and ``Errors`` in
``AWS/Lambda`` with ``FunctionName``, ``Resource`` = ``function:alias`` and ``ExecutedVersion``,
timestamped now) and splits the invocations between the versions by the alias's state at that
moment, so the gate's sample-ratio check sees real routing.

The runs are ``airflow dags test`` subprocesses, side by side, each on its own copy of the test
database: a CloudWatch gate cannot pass before one whole 60-second period after its shift has
been published, so each gate takes 60 to 120 seconds.
"""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest
import yaml

from canary_operators.spec import parse_spec
from tests.airflow_subprocess_runs import finish_run, start_run
from tests.conftest import point_aws_at_moto

CONN_ID = "aws_test"
ALIAS = "live"
ERROR_RATES = {"promoted": {"1": 0.01, "2": 0.01}, "rolled_back": {"1": 0.01, "2": 0.30}}  # per Lambda version
# Each CloudWatch gate takes one to two minutes, so the promoted release judges one step; the
# rolled-back one fails at its first.
STEPS = {"promoted": [50, 100], "rolled_back": [10, 50, 100]}
CONF = {"version": "2", "stable_version": "1"}
INVOCATIONS_PER_TICK = 400  # split between the versions by the alias's weights
TICK_SECONDS = 0.5
RUN_TIMEOUT = 300

AliasState = tuple[str, dict[str, float]]  # (FunctionVersion, AdditionalVersionWeights)


@dataclass
class World:
    """One release's function and alias in moto."""

    release: str  # a key of ERROR_RATES
    function_name: str
    states: list[AliasState] = field(default_factory=list)  # each change once, as the poller saw it

    @property
    def current(self) -> AliasState:
        return self.states[-1]


def clients():
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return {kind: AwsBaseHook(aws_conn_id=CONN_ID, client_type=kind).conn for kind in ("iam", "lambda", "cloudwatch")}


def zipped(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("handler.py", source)
    return buffer.getvalue()


def alias_state(lambdas, function_name: str) -> AliasState:
    alias = lambdas.get_alias(FunctionName=function_name, Name=ALIAS)
    return alias["FunctionVersion"], dict((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {})


def build_world(aws: dict, release: str, role: str) -> World:
    """A function with published versions 1 and 2, and the alias on version 1."""
    lambdas = aws["lambda"]
    name = f"api-{release.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    lambdas.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.main",
                            Code={"ZipFile": zipped("def main(event, context):\n    return 1\n")})
    assert lambdas.publish_version(FunctionName=name)["Version"] == "1"
    lambdas.update_function_code(FunctionName=name, ZipFile=zipped("def main(event, context):\n    return 2\n"))
    assert lambdas.publish_version(FunctionName=name)["Version"] == "2"
    lambdas.create_alias(FunctionName=name, Name=ALIAS, FunctionVersion="1")
    world = World(release, name)
    world.states.append(alias_state(lambdas, name))
    assert world.current == ("1", {})
    return world


def spec_for(name: str, world: World) -> dict:
    data = {
        "name": name,
        "stable_version": "1",
        "router": {"type": "lambda_alias", "conn_id": CONN_ID, "settings": {
            "function_name": world.function_name, "alias": ALIAS, "retry_wait_seconds": 0.2}},
        "metrics": {"type": "cloudwatch", "conn_id": CONN_ID, "settings": {
            "source": "lambda", "function_name": world.function_name, "alias": ALIAS, "lag_seconds": 0, "period": 60}},
        "steps": STEPS[world.release],
        "bake_time": "5s",
        "settle_time": "1s",
        "gate_timeout": "150s",  # one whole minute after the shift, whenever in the minute it happens
        "poke_interval": "5s",  # a gate waits for a whole published minute anyway; each look costs moto CPU
        "retries": 0,
        "checks": [{"name": "errors", "kind": "error_rate", "max_increase_pp": 5, "min_requests": 500}],
    }
    parse_spec(data, f"{name}.yaml")  # fail here, readably, if the test's spec is wrong
    return data


# ---------------------------------------------------------------------------------------------
# Background threads: the alias as moto has it, and the alias's metrics


def record_alias_states(worlds: list[World], stop: threading.Event, errors: list) -> None:
    lambdas = clients()["lambda"]
    while not stop.is_set():
        try:
            for world in worlds:
                now = alias_state(lambdas, world.function_name)
                if now != world.current:
                    world.states.append(now)
        except Exception as e:  # noqa: BLE001  reported by the fixture
            errors.append(f"alias poller: {e!r}")
        time.sleep(0.25)  # each state lasts seconds (a bake, a gate); moto answers cost CPU


def split(state: AliasState, total: int) -> dict[str, int]:
    """Invocations per executed version: the extra versions take their weights, the alias's version the rest."""
    version, extra = state
    out = {v: round(total * w) for v, w in extra.items()}
    out[version] = total - sum(out.values())
    return {v: n for v, n in out.items() if n > 0}


def feed_metrics(worlds: list[World], stop: threading.Event, errors: list) -> None:
    cloudwatch = clients()["cloudwatch"]
    while not stop.is_set():
        try:
            now = datetime.now(timezone.utc)
            for world in worlds:
                data = []
                # Like Lambda, a version that served no invocations publishes nothing.
                for version, invocations in split(world.current, INVOCATIONS_PER_TICK).items():
                    dims = [{"Name": "FunctionName", "Value": world.function_name},
                            {"Name": "Resource", "Value": f"{world.function_name}:{ALIAS}"},
                            {"Name": "ExecutedVersion", "Value": version}]
                    data += [{"MetricName": "Invocations", "Dimensions": dims, "Timestamp": now, "Value": invocations, "Unit": "Count"},
                             {"MetricName": "Errors", "Dimensions": dims, "Timestamp": now,
                              "Value": round(invocations * ERROR_RATES[world.release][version]), "Unit": "Count"}]
                cloudwatch.put_metric_data(Namespace="AWS/Lambda", MetricData=data)
        except Exception as e:  # noqa: BLE001  reported by the fixture
            errors.append(f"metrics feeder: {e!r}")
        time.sleep(TICK_SECONDS)


# ---------------------------------------------------------------------------------------------
# Runs: `airflow dags test` subprocesses (tests/airflow_subprocess_runs.py)


@pytest.fixture(scope="module")
def runs(moto_server, airflow_db, tmp_path_factory):
    """Both releases, run side by side: {"promoted": (world, result, clients), "rolled_back": ...}."""
    workdir = tmp_path_factory.mktemp("lambda-runs")
    releases = workdir / "releases"
    releases.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        point_aws_at_moto(mp, moto_server, CONN_ID)
        mp.setenv("CANARY_RELEASES_DIR", str(releases))

        aws = clients()
        trust = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        role = aws["iam"].create_role(RoleName=f"canary-lambda-{uuid.uuid4().hex[:8]}",
                                      AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        worlds = {name: build_world(aws, name, role) for name in ERROR_RATES}
        for name, world in worlds.items():
            (releases / f"lambda_{name}.yaml").write_text(yaml.safe_dump(spec_for(f"lambda_{name}", world)))

        stop, errors = threading.Event(), []
        threads = [threading.Thread(target=fn, args=(list(worlds.values()), stop, errors), daemon=True)
                   for fn in (record_alias_states, feed_metrics)]
        for t in threads:
            t.start()
        try:
            started = {name: start_run(f"canary_lambda_{name}", CONF, workdir, airflow_db / "airflow.db")
                       for name in worlds}
            deadline = time.monotonic() + RUN_TIMEOUT
            results = {name: finish_run(proc, result, deadline) for name, (proc, result) in started.items()}
            time.sleep(0.3)  # one more look at the alias
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert not errors, errors[:5]
        yield {name: (worlds[name], results[name], aws) for name in worlds}


def test_healthy_version_is_promoted_and_the_alias_points_at_it(runs):
    world, run, aws = runs["promoted"]
    assert run.state == "success" and run.returncode == 0, (run.states, run.tail())
    assert "deploy_canary" not in run.states  # no deploy action: the versions are already published
    for task in ("preflight", "shift_to_50", "gate_50", "approve_100", "promote", "rollback", "complete_rollout"):
        assert run.states[task] == "success", (task, run.states)
    assert run.xcom("rollback")["traffic_changed"] is False  # the undo ran, as a teardown, and left the promotion alone

    # moto's alias: on 1, half the invocations to 2, then on 2 alone, in one move: the alias
    # promotes natively, so promote() is the only write (no apply(100) first)
    assert world.states == [("1", {}), ("1", {"2": 0.5}), ("2", {})]
    assert alias_state(aws["lambda"], world.function_name) == ("2", {})

    gate = run.xcom("gate_50")
    assert gate["outcome"] == "advance"
    errors = next(c for c in gate["checks"] if c["check"] == "errors")
    assert errors["verdict"] == "pass" and errors["canary_requests"] >= 500
    assert errors["canary_value"] < 0.02 and errors["baseline_value"] < 0.02
    srm = next(c for c in gate["checks"] if c["check"] == "sample_ratio")
    assert srm["verdict"] == "pass" and abs(srm["canary_value"] - 0.5) < 0.01  # version 2 executed half

    promote = run.xcom("promote")
    assert promote["canary_weight"] == 100
    assert promote["router"] == f"lambda alias {world.function_name}:{ALIAS} → version 2 (was 1)"
    assert "action" not in promote and "after_promote" not in promote
    assert run.variable("canary_stable_version__lambda_promoted") == "2"  # the next run's baseline
    status = json.loads(run.variable("canary_status__lambda_promoted"))
    assert status["phase"] == "promoted" and status["version"] == "2" and status["stable_version"] == "1"


def test_bad_version_is_rolled_back_at_the_first_gate_and_the_alias_is_back_on_1(runs):
    world, run, aws = runs["rolled_back"]
    assert run.state == "failed" and run.returncode != 0, (run.states, run.tail())
    assert run.states["preflight"] == "success" and run.states["shift_to_10"] == "success"
    assert run.states["gate_10"] == "failed"
    assert run.states["rollback"] == "success"
    assert run.states["shift_to_50"] == "upstream_failed" and run.states["promote"] == "upstream_failed"

    # moto's alias: 10% to version 2, then back on 1 with no extra weights (the gate's fast reset)
    assert world.states == [("1", {}), ("1", {"2": 0.1}), ("1", {})]
    assert alias_state(aws["lambda"], world.function_name) == ("1", {})

    evidence = run.xcom("gate_10", "evidence")
    assert evidence["outcome"] == "rollback"
    errors = next(c for c in evidence["checks"] if c["check"] == "errors")
    assert errors["verdict"] == "fail" and errors["canary_value"] > 0.2 and errors["baseline_value"] < 0.02
    assert run.xcom("gate_10", "fast_rollback")["weight_after"] == 0

    rollback = run.xcom("rollback")
    assert rollback["canary_weight"] == 0 and rollback["stable_version"] == "1"
    assert "gate_10" in rollback["reason"] and "error rate" in rollback["reason"]
    assert "action" not in rollback  # no rollback action: moving the alias is the whole rollback
    assert run.variable("canary_stable_version__lambda_rolled_back") is None  # nothing was promoted
