"""HAProxy through its runtime API (the admin socket): ``set server B/S weight N``, ``get weight``.

The connection gives either ``host``/``port`` of a TCP admin socket (``stats socket
ipv4@127.0.0.1:PORT level admin``) or ``extra.socket``, the path of a UNIX admin socket.
Runtime weights are lost on an HAProxy reload unless a server-state file is configured.
"""

from __future__ import annotations

import re
import socket
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from canary_operators.exceptions import RouterError
from canary_operators.routers.base import TrafficRouter

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
        ep = self.endpoint
        path = ep.extra.get("socket") if ep else None
        target: object = path
        try:
            if path:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                target = path
            elif ep and ep.host and ep.port:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                target = (ep.host, ep.port)
            else:
                raise RouterError("haproxy: the connection needs host and port, or extra.socket")
            with sock:
                sock.settimeout(self.settings.timeout_seconds)
                sock.connect(target)
                sock.sendall(command.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as e:
            from canary_operators.secrets import scrub

            raise RouterError(scrub(f"haproxy: admin socket {target!r} unreachable: {e}")) from e
        return b"".join(chunks).decode(errors="replace").strip()

    def _set(self, server: str, weight: int) -> None:
        answer = self._command(f"set server {self.settings.backend}/{server} weight {weight}")
        if answer:  # success is an empty answer
            raise RouterError(f"haproxy: set weight of {self.settings.backend}/{server} failed: {answer}")

    def _get(self, server: str) -> int:
        answer = self._command(f"get weight {self.settings.backend}/{server}")
        match = re.match(r"^(\d+) \(initial \d+\)", answer)
        if not match:
            raise RouterError(f"haproxy: get weight of {self.settings.backend}/{server} failed: {answer}")
        return int(match.group(1))

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
            return self.get_canary_weight()
        except RouterError:
            return None

    def get_canary_weight(self) -> int:
        stable, canary = self._get(self.settings.stable_server), self._get(self.settings.canary_server)
        if stable + canary == 0:
            raise RouterError(f"haproxy: both servers of backend {self.settings.backend} have weight 0")
        return round(canary * 100 / (stable + canary))
