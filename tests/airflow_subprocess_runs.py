"""Full DAG runs as ``airflow dags test`` subprocesses, each on a private copy of the test DB.

Used where gates wait on CloudWatch's one-minute periods: two releases then run side by side
instead of one after the other, and never contend for SQLite.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunResult:
    dag_id: str
    returncode: int
    state: str | None
    states: dict[str, str]
    db: Path
    log: Path

    def xcom(self, task_id: str, key: str = "return_value"):
        with sqlite3.connect(self.db) as db:
            row = db.execute("SELECT value FROM xcom WHERE dag_id=? AND task_id=? AND key=?", (self.dag_id, task_id, key)).fetchone()
        value = None if row is None else json.loads(row[0])
        return json.loads(value) if isinstance(value, str) else value

    def variable(self, key: str) -> str | None:
        """An Airflow Variable as this run's database holds it (decrypted with the session's Fernet key)."""
        from airflow.models.crypto import get_fernet

        with sqlite3.connect(self.db) as db:
            row = db.execute("SELECT val, is_encrypted FROM variable WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        return get_fernet().decrypt(row[0].encode()).decode() if row[1] else row[0]

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-60:])


def start_run(dag_id: str, conf: dict, workdir: Path, template_db: Path) -> tuple[subprocess.Popen, RunResult]:
    db = workdir / f"{dag_id}.db"
    with sqlite3.connect(template_db) as source, sqlite3.connect(db) as target:
        source.backup(target)
    log = workdir / f"{dag_id}.log"
    env = {**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{db}"}
    airflow = str(Path(sys.executable).with_name("airflow"))
    with log.open("w") as out:
        proc = subprocess.Popen([airflow, "dags", "test", dag_id, "-c", json.dumps(conf)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    return proc, RunResult(dag_id, -1, None, {}, db, log)


def finish_run(proc: subprocess.Popen, result: RunResult, deadline: float) -> RunResult:
    try:
        result.returncode = proc.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    with sqlite3.connect(result.db) as db:
        row = db.execute("SELECT state FROM dag_run WHERE dag_id=?", (result.dag_id,)).fetchone()
        result.state = row and row[0]
        result.states = dict(db.execute("SELECT task_id, state FROM task_instance WHERE dag_id=?", (result.dag_id,)))
    return result
