"""A test-only auth manager: Airflow's simple auth manager, plus DAGs that a user may not touch.

Every role of the simple auth manager reads every DAG, so none of its users is "a user who cannot
read this DAG". ``CANARY_TEST_DENIED_DAGS="viewer:canary_x,..."`` adds exactly that: for a listed
user and DAG, every authorisation check of that DAG answers no (any method, any entity: runs,
XComs, logs); everything else is the simple auth manager's own answer. Airflow's own endpoints and
the canary report ask the same auth manager, so a test can show that they agree.

Airflow loads it by name (``AIRFLOW__CORE__AUTH_MANAGER``); the repo's root must be on the
components' ``PYTHONPATH``.
"""

from __future__ import annotations

import os

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

DENIED_ENV = "CANARY_TEST_DENIED_DAGS"
CLASS_PATH = "tests.scoped_auth_manager.DagScopedAuthManager"


def denied() -> set[tuple[str, str]]:
    """(user, dag_id) pairs from the environment."""
    pairs = (item.split(":", 1) for item in os.environ.get(DENIED_ENV, "").split(",") if ":" in item)
    return {(user.strip(), dag_id.strip()) for user, dag_id in pairs}


class DagScopedAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method, user, access_entity=None, details=None) -> bool:
        if details is not None and details.id and (user.get_name(), details.id) in denied():
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
