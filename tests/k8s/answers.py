"""The API server's answers other than 200: the real server's error bodies in ``recorded/`` (its
README names the source of each), filled in per request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RECORDED = Path(__file__).with_name("recorded")


class ApiError(Exception):
    """An answer other than 200: a ``Status`` (a dict), or plain text for a path nobody serves."""

    def __init__(self, body: dict | str, code: int | None = None):
        super().__init__(body)
        self.body, self.code = body, code or body["code"]


def recorded(answer: str, /, **fields: str) -> ApiError:
    """The real server's answer ``recorded/{answer}.json``, its ``{placeholders}`` filled from ``fields``."""

    def fill(value):
        if isinstance(value, str):
            return value.format(**fields)
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return [fill(v) for v in value] if isinstance(value, list) else value

    return ApiError(fill(json.loads((RECORDED / f"{answer}.json").read_text())))


def status(code: int, reason: str, message: str) -> ApiError:
    """A ``Status`` that is not recorded: a 5xx a test injects, or a bug in the fake."""
    return ApiError({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": message, "reason": reason, "code": code})


def bad_request(message: str) -> ApiError:
    return recorded("bad_request", message=message)


def not_served() -> ApiError:
    return ApiError((RECORDED / "not_served.txt").read_text(), 404)


def _go_value(value: Any) -> str:
    """A bad value as ``field.Error`` prints it: numbers and booleans as they are, the rest as JSON."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if isinstance(value, (int, float)) else json.dumps(value, separators=(",", ":"))


def invalid(kind, name: str, errors: list[tuple[str, Any, str]]) -> ApiError:
    """``NewInvalid``: ``errors`` are ``field.Invalid(field, bad value, detail)``."""
    bodies = [recorded("invalid", kind=kind.kind, group=kind.group, name=name, field=f, value=_go_value(v), detail=d).body
              for f, v, d in errors]
    body = bodies[0]
    if len(bodies) > 1:  # the aggregate of several: "[a, b]"
        causes = [b["details"]["causes"][0] for b in bodies]
        body["details"]["causes"] = causes
        body["message"] = f'{kind.kind}.{kind.group} "{name}" is invalid: [{", ".join(c["field"] + ": " + c["message"] for c in causes)}]'
    return ApiError(body)
