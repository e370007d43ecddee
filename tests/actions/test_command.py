"""The command action: runs a local program with the release's versions."""

from __future__ import annotations

import sys

import pytest

from canary_operators.actions import run_action
from canary_operators.exceptions import HookError
from canary_operators.spec import CommandHook, RunConf

RUN = RunConf(release="web", version="v2", stable_version="v1")


def test_command_gets_the_versions_as_arguments_and_environment(tmp_path):
    out = tmp_path / "out.txt"
    script = f"import os,sys; open({str(out)!r},'w').write(' '.join(sys.argv[1:]) + ' ' + os.environ['CANARY_VERSION'])"
    action = CommandHook(type="command", command=[sys.executable, "-c", script, "{release}", "{version}", "{stable_version}"])
    assert run_action(action, "deploy", RUN, lambda _: None).startswith("ran ")
    assert out.read_text() == "web v2 v1 v2"


def test_failing_command_says_why():
    action = CommandHook(type="command", command=[sys.executable, "-c", "import sys; print('image not found', file=sys.stderr); sys.exit(3)"])
    with pytest.raises(HookError, match="deploy command .* exited 3: image not found"):
        run_action(action, "deploy", RUN, lambda _: None)


def test_missing_command_and_timeout():
    with pytest.raises(HookError, match="command not found: no-such-binary-here"):
        run_action(CommandHook(type="command", command=["no-such-binary-here"]), "deploy", RUN, lambda _: None)
    slow = CommandHook(type="command", command=[sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.5)
    with pytest.raises(HookError, match="timed out after 0.5s"):
        run_action(slow, "promote", RUN, lambda _: None)
