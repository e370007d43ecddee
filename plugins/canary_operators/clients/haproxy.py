"""HAProxy's runtime API (the admin socket): one command, one answer, over TCP or a UNIX socket.

The connection gives either ``host``/``port`` of a TCP admin socket (``stats socket
ipv4@127.0.0.1:PORT level admin``) or ``extra.socket``, the path of a UNIX admin socket.
Errors: a socket that cannot be reached is a ``RouterError`` (a retry may help); a connection
without an address is a ``RouterRefused`` (only the connection's owner can fix it).
"""

from __future__ import annotations

import socket

from canary_operators.endpoint import Endpoint
from canary_operators.exceptions import RouterError, RouterRefused


class HAProxyRuntimeApi:
    def __init__(self, endpoint: Endpoint | None, timeout: float):
        self.endpoint = endpoint
        self.timeout = timeout

    def command(self, command: str) -> str:
        """Send one runtime-API command; return HAProxy's answer, stripped (empty means success
        for the commands that change state)."""
        ep = self.endpoint
        path = ep.extra.get("socket") if ep else None
        if path:
            family, target = socket.AF_UNIX, path
        elif ep and ep.host and ep.port:
            family, target = socket.AF_INET, (ep.host, ep.port)
        else:
            raise RouterRefused("haproxy: the connection needs host and port, or extra.socket")
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(target)
                sock.sendall(command.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as e:
            from canary_operators.secrets import scrub

            raise RouterError(scrub(f"haproxy: admin socket {target!r} unreachable: {e}")) from e
        return b"".join(chunks).decode(errors="replace").strip()
