"""The actions a release runs (deploy, promote, after_promote, rollback): one model per ``type``."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BeforeValidator, Field

from canary_operators.spec.fields import Duration, Template, _image_template, _Strict

_K8S_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"  # RFC 1123 subdomain
_K8S_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"  # RFC 1123 label (namespaces, containers)


class CommandHook(_Strict):
    """Run a command (no shell). ``{version}``, ``{stable_version}``, ``{release}`` are filled in."""

    type: Literal["command"]
    command: list[Template] = Field(min_length=1)
    timeout: Duration = 300.0


class WebhookHook(_Strict):
    """POST a JSON body to an Airflow HTTP connection (Flagger-style webhook)."""

    type: Literal["webhook"]
    conn_id: str
    endpoint: str = Field(default="/", pattern=r"^/")
    timeout: Duration = 30.0


class EcsDeployHook(_Strict):
    """Register a task definition revision whose ``container`` runs ``image`` (``{version}`` filled
    in), point ``service`` at it, and wait until the service is stable."""

    type: Literal["ecs_deploy"]
    conn_id: str = "aws_default"
    cluster: str = Field(min_length=1)
    service: str = Field(min_length=1)
    container: str = Field(min_length=1)
    image: str = Field(min_length=1)  # e.g. "123.dkr.ecr.eu-west-1.amazonaws.com/web:{version}"
    desired_count: int | None = Field(default=None, ge=0)  # None keeps the service's count
    wait: bool = True
    timeout: Duration = 600.0


class EcsScaleHook(_Strict):
    """Set an ECS service's desired count (0 to scale the canary down) and wait until stable."""

    type: Literal["ecs_scale"]
    conn_id: str = "aws_default"
    cluster: str = Field(min_length=1)
    service: str = Field(min_length=1)
    desired_count: int = Field(default=0, ge=0)
    wait: bool = True
    timeout: Duration = 600.0


class K8sDeployHook(_Strict):
    """Set ``container``'s image in a Deployment (``{version}``, ``{stable_version}``, ``{release}``
    filled in), optionally its replicas, and wait until the Deployment is ready."""

    type: Literal["k8s_deploy"]
    conn_id: str = "kubernetes_default"
    namespace: str = Field(pattern=_K8S_LABEL)
    deployment: str = Field(pattern=_K8S_NAME)
    container: str = Field(pattern=_K8S_LABEL)
    image: Annotated[str, BeforeValidator(_image_template)] = Field(min_length=1)  # "registry.example/web:{version}"
    replicas: int | None = Field(default=None, ge=0)  # None keeps the Deployment's count
    wait: bool = True
    timeout: Duration = 600.0


class K8sScaleHook(_Strict):
    """Set a Deployment's replicas (0 scales the canary down) and wait until it has settled."""

    type: Literal["k8s_scale"]
    conn_id: str = "kubernetes_default"
    namespace: str = Field(pattern=_K8S_LABEL)
    deployment: str = Field(pattern=_K8S_NAME)
    replicas: int = Field(default=0, ge=0)
    wait: bool = True
    timeout: Duration = 300.0


Hook = Annotated[
    Union[CommandHook, WebhookHook, EcsDeployHook, EcsScaleHook, K8sDeployHook, K8sScaleHook], Field(discriminator="type")
]
