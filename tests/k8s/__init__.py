"""A fake Kubernetes cluster for tests: a local API server (``api_server``) that the real
``kubernetes`` client talks to through a kubeconfig, answering errors with the real server's bodies
(``recorded/``), with small controllers (``controllers``) and objects to preload (``objects``).

Use the ``k8s`` fixture in a test module: ``from tests.k8s import k8s, virtual_service``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.k8s.api_server import TOKEN, FakeKubeApi
from tests.k8s.objects import deployment, http_route, ingress, role_rules_from_docs, rollout, virtual_service

__all__ = ["TOKEN", "Cluster", "FakeKubeApi", "deployment", "http_route", "ingress", "k8s", "role_rules_from_docs",
           "rollout", "virtual_service"]


@dataclass
class Cluster:
    """A started fake API server plus the Airflow connection id that points at it."""

    api: FakeKubeApi
    conn_id: str


@pytest.fixture
def k8s(tmp_path, monkeypatch):
    """A fake API server and the Airflow connection ``t_k8s`` (conn_type kubernetes) whose
    ``kube_config_path`` points at it, the way KubernetesHook reads it."""
    from tests.conftest import set_connection

    with FakeKubeApi() as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig.yaml")
        set_connection(monkeypatch, "t_k8s", conn_type="kubernetes", extra={"kube_config_path": str(kubeconfig)})
        yield Cluster(api=api, conn_id="t_k8s")
