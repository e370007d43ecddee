"""Load airflow_settings.yaml (Astro CLI format) into plain Airflow: connections, variables, pools.

Usage: python include/scripts/load_airflow_settings.py [airflow_settings.yaml]
Runs `airflow connections|variables|pools import` with the current AIRFLOW_HOME; safe to run twice
(existing entries are overwritten). Secrets are written only to a private temporary file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


class SettingsError(ValueError):
    pass


def convert(settings: dict, source: str = "airflow_settings.yaml") -> dict[str, dict | list]:
    """Astro's lists → the JSON that `airflow … import` reads. Raises SettingsError naming the field."""
    airflow = (settings or {}).get("airflow") or {}
    if not isinstance(airflow, dict):
        raise SettingsError(f"{source}: airflow: must be a mapping")
    connections: dict[str, dict] = {}
    for i, c in enumerate(airflow.get("connections") or []):
        if not isinstance(c, dict) or not c.get("conn_id") or not c.get("conn_type"):
            raise SettingsError(f"{source}: airflow.connections[{i}]: needs conn_id and conn_type")
        extra = c.get("conn_extra")
        connections[c["conn_id"]] = {
            "conn_type": c["conn_type"],
            "host": c.get("conn_host"),
            "login": c.get("conn_login"),
            "password": c.get("conn_password"),
            "port": int(c["conn_port"]) if c.get("conn_port") else None,
            "schema": c.get("conn_schema"),
            "extra": json.dumps(extra) if isinstance(extra, dict) else extra,
        }
    variables: dict[str, str] = {}
    for i, v in enumerate(airflow.get("variables") or []):
        if not isinstance(v, dict) or not v.get("variable_name"):
            raise SettingsError(f"{source}: airflow.variables[{i}]: needs variable_name")
        variables[v["variable_name"]] = v.get("variable_value")
    pools: dict[str, dict] = {}
    for i, p in enumerate(airflow.get("pools") or []):
        if not isinstance(p, dict) or not p.get("pool_name") or not isinstance(p.get("pool_slot"), int):
            raise SettingsError(f"{source}: airflow.pools[{i}]: needs pool_name and an integer pool_slot")
        pools[p["pool_name"]] = {"slots": p["pool_slot"], "description": p.get("pool_description", ""), "include_deferred": False}
    return {"connections": connections, "variables": variables, "pools": pools}


def load(path: Path, airflow_bin: str = "airflow") -> None:
    converted = convert(yaml.safe_load(path.read_text()), source=path.name)
    commands = {
        "connections": ["connections", "import", "--overwrite"],
        "variables": ["variables", "import", "--action-on-existing-key", "overwrite"],
        "pools": ["pools", "import"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for kind, args in commands.items():
            if not converted[kind]:
                continue
            file = Path(tmp) / f"{kind}.json"
            file.touch(mode=0o600)
            file.write_text(json.dumps(converted[kind]))
            done = subprocess.run([airflow_bin, *args, str(file)], capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"airflow {' '.join(args)} failed:\n{done.stderr[-2000:]}")
            print(f"loaded {len(converted[kind])} {kind} from {path.name}")


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else ROOT / "airflow_settings.yaml"
    airflow_bin = str(Path(sys.executable).with_name("airflow"))
    try:
        load(path, airflow_bin if os.path.exists(airflow_bin) else "airflow")
    except SettingsError as e:
        print(e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
