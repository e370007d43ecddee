"""HAProxy through its runtime API (the admin socket): ``set server B/S weight N``, and
``show servers state B`` to read every server of the backend.

- ``get_weights``: each server's weight as set (``srv_uweight``), as percentages of the backend's
  total; servers other than stable and canary show as "elsewhere".
- ``verify``: the data plane's view: a server in maintenance or down takes no traffic whatever its
  weight, so the split is verified when every server that should take traffic is up and ready.

The connection is read by the client (``clients/haproxy.py``): a TCP or a UNIX admin socket.
Runtime weights are lost on an HAProxy reload unless a server-state file is configured.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from canary_operators.clients.haproxy import HAProxyRuntimeApi
from canary_operators.exceptions import RouterError
from canary_operators.routers.base import TrafficRouter, Weights

_NAME = r"^[A-Za-z0-9_.:-]{1,64}$"


class HAProxySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: str = Field(pattern=_NAME)
    stable_server: str = Field(default="stable", pattern=_NAME)
    canary_server: str = Field(default="canary", pattern=_NAME)
    timeout_seconds: float = Field(default=3.0, gt=0)


class HAProxyRouter(TrafficRouter):
    type_name: ClassVar[str] = "haproxy"
    settings_model = HAProxySettings

    def _command(self, command: str) -> str:
        return HAProxyRuntimeApi(self.endpoint, self.settings.timeout_seconds).command(command)

    def _set(self, server: str, weight: int) -> None:
        answer = self._command(f"set server {self.settings.backend}/{server} weight {weight}")
        if answer:  # success is an empty answer
            raise RouterError(f"haproxy: set weight of {self.settings.backend}/{server} failed: {answer}")

    def _servers(self) -> dict[str, tuple[int, bool]]:
        """Server name → (weight as set, takes traffic: running and not in maintenance or drain)."""
        backend = self.settings.backend
        answer = self._command(f"show servers state {backend}")
        header, servers = None, {}
        for line in answer.splitlines():
            if line.startswith("# be_id"):
                header = line[2:].split()
            elif header and line and not line.startswith("#") and len(line.split()) >= len(header) - 2:
                row = dict(zip(header, line.split()))
                if row.get("be_name") == backend:
                    up = row.get("srv_op_state") == "2" and int(row.get("srv_admin_state", "0")) & 0x0F == 0
                    servers[row["srv_name"]] = (int(row["srv_uweight"]), up)
        if not servers:
            raise RouterError(f"haproxy: backend {backend} has no servers, or the runtime API answered: {answer[:200]}")
        for name in (self.settings.stable_server, self.settings.canary_server):
            if name not in servers:
                raise RouterError(f"haproxy: backend {backend} has no server {name!r} (servers: {sorted(servers)})")
        return servers

    def set_canary_weight(self, percent: int) -> None:
        s = self.settings
        current = self.get_canary_weight_or_none()
        # Order the two writes so the split in between stays between the old and the new share.
        if current is not None and percent > current:
            self._set(s.canary_server, percent)
            self._set(s.stable_server, 100 - percent)
        else:
            self._set(s.stable_server, 100 - percent)
            self._set(s.canary_server, percent)

    def get_canary_weight_or_none(self) -> int | None:
        try:
            return self.get_weights().canary
        except RouterError:
            return None

    def get_weights(self) -> Weights:
        servers = self._servers()
        total = sum(weight for weight, _ in servers.values())
        stable, canary = servers[self.settings.stable_server][0], servers[self.settings.canary_server][0]
        if total == 0:
            return Weights(stable=0, canary=0)  # nothing takes traffic: shown, never rounded to a split
        stable_pct, canary_pct = round(stable * 100 / total), round(canary * 100 / total)
        return Weights(stable=stable_pct, canary=canary_pct, other=100 - stable_pct - canary_pct)

    def verify(self, percent: int) -> bool:
        servers = self._servers()
        needed = [name for name, share in ((self.settings.stable_server, 100 - percent),
                                           (self.settings.canary_server, percent)) if share > 0]
        return all(servers[name][1] for name in needed)
