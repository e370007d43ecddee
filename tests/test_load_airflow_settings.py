"""airflow_settings.yaml (Astro format) → plain Airflow's connections, variables and pools."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, load_module

loader = load_module("include/scripts/load_airflow_settings.py", "load_airflow_settings")


def test_convert_the_shipped_file():
    converted = loader.convert(yaml.safe_load((ROOT / "airflow_settings.yaml").read_text()))
    haproxy = converted["connections"]["haproxy_demo"]
    assert haproxy["conn_type"] == "generic" and haproxy["host"] == "127.0.0.1" and haproxy["port"] == 18081
    assert converted["variables"] == {"canary_stable_version__demo": "v1"}
    assert converted["pools"]["canary_releases"]["slots"] == 32


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"airflow": {"connections": [{"conn_type": "http"}]}}, "airflow.connections[0]: needs conn_id and conn_type"),
        ({"airflow": {"variables": [{"variable_value": 1}]}}, "airflow.variables[0]: needs variable_name"),
        ({"airflow": {"pools": [{"pool_name": "p", "pool_slot": "many"}]}}, "airflow.pools[0]: needs pool_name and an integer pool_slot"),
        ({"airflow": ["x"]}, "airflow: must be a mapping"),
    ],
)
def test_bad_settings_name_the_field(settings, message):
    with pytest.raises(loader.SettingsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        loader.convert(settings)


def test_loads_into_airflow_and_is_safe_to_run_twice(airflow_db, tmp_path):
    settings = {
        "airflow": {
            "connections": [{"conn_id": "t_prom", "conn_type": "http", "conn_host": "127.0.0.1", "conn_port": 9,
                             "conn_password": "pw-1", "conn_extra": {"a": 1}}],
            "variables": [{"variable_name": "t_var", "variable_value": "one"}],
            "pools": [{"pool_name": "t_pool", "pool_slot": 3, "pool_description": "test"}],
        }
    }
    path = tmp_path / "airflow_settings.yaml"
    path.write_text(yaml.safe_dump(settings))
    airflow_bin = str(Path(sys.executable).with_name("airflow"))
    loader.load(path, airflow_bin)
    settings["airflow"]["connections"][0]["conn_password"] = "pw-2"
    path.write_text(yaml.safe_dump(settings))
    loader.load(path, airflow_bin)  # second run overwrites, does not fail

    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        conn = session.query(Connection).filter_by(conn_id="t_prom").one()
        assert (conn.host, conn.port, conn.password, conn.extra_dejson) == ("127.0.0.1", 9, "pw-2", {"a": 1})
        assert session.query(Variable).filter_by(key="t_var").one().val == "one"
        assert session.query(Pool).filter_by(pool="t_pool").one().slots == 3
