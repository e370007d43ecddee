"""How a backend is reached: the parts of an Airflow connection, without Airflow."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Endpoint:
    host: str | None = None
    port: int | None = None
    schema: str | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)  # never printed or logged
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def base_url(self, default_scheme: str = "http") -> str:
        """``scheme://host:port`` for HTTP backends; a host that already has a scheme is kept."""
        if not self.host:
            raise ValueError("connection has no host")
        host = self.host.rstrip("/")
        if "://" not in host:
            host = f"{self.schema or default_scheme}://{host}"
        return f"{host}:{self.port}" if self.port else host

    @classmethod
    def from_connection(cls, conn: Any) -> "Endpoint":
        """Build from an Airflow ``Connection``-like object, and register its secrets (``secrets.remember``)."""
        from canary_operators.secrets import remember

        extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else {}
        endpoint = cls(
            host=conn.host,
            port=int(conn.port) if conn.port else None,
            schema=conn.schema or None,
            login=conn.login or None,
            password=conn.password or None,
            extra=dict(extra or {}),
        )
        remember(endpoint)  # its secrets are scrubbed from every error, log line, XCom and record
        return endpoint
