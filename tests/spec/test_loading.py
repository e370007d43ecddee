"""Loading a spec file: the shipped specs load, and a bad file names itself and the line or field."""

from __future__ import annotations

import pytest
import yaml

from canary_operators.exceptions import SpecError
from canary_operators.spec import load_spec
from tests.conftest import ROOT
from tests.spec.minimal import MINIMAL, spec_with


@pytest.mark.parametrize("path", sorted((ROOT / "include" / "releases").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_spec_is_valid(path):
    assert load_spec(path).name == path.stem


def test_load_spec_names_the_file_relative_to_the_project(tmp_path):
    releases = tmp_path / "include" / "releases"
    releases.mkdir(parents=True)
    (tmp_path / "dags").mkdir()
    path = releases / "web.yaml"
    path.write_text(yaml.safe_dump(spec_with(steps=[1, 5, 120, 50, 100])))
    with pytest.raises(SpecError, match=r"^include/releases/web.yaml: steps\[2\]=120: must be a percentage"):
        load_spec(path)


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "web.yaml"
    path.write_text("name: web\nsteps: [1, 5\nrouter: x\n")
    with pytest.raises(SpecError, match=r"web.yaml: line \d+: not valid YAML"):
        load_spec(path)


def test_name_must_match_file_name(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    with pytest.raises(SpecError, match=r"name=web: must match the file name \(other\)"):
        load_spec(path)


def test_up_to_100_aliases_are_fine_and_101_are_refused(tmp_path):
    path = tmp_path / "web.yaml"
    many = "description: &d hello\ntags: [" + ", ".join(["*d"] * 100) + "]\n"
    path.write_text(yaml.safe_dump(MINIMAL) + many)
    assert load_spec(path).tags == ["hello"] * 100
    path.write_text(yaml.safe_dump(MINIMAL) + many.replace("]\n", ", *d]\n"))
    with pytest.raises(SpecError, match=r"web.yaml: line \d+: not valid YAML: more than 100 aliases"):
        load_spec(path)


def test_an_asterisk_in_a_value_is_not_an_alias(tmp_path):
    path = tmp_path / "web.yaml"
    path.write_text(yaml.safe_dump(spec_with(schedule="*/5 * * * *", description="the * of the show")))
    spec = load_spec(path)
    assert (spec.schedule, spec.description) == ("*/5 * * * *", "the * of the show")
