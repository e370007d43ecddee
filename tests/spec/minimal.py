"""The smallest valid release spec, and the same spec with some fields changed (``...`` deletes)."""

from __future__ import annotations

MINIMAL = {
    "name": "web",
    "router": {"type": "haproxy", "conn_id": "h", "settings": {"backend": "app"}},
    "metrics": {"type": "prometheus", "conn_id": "p"},
    # haproxy cannot promote by itself: the new version must reach the stable slot through an action.
    "promote": {"type": "command", "command": ["deploy-stable", "{version}"]},
}


def spec_with(**changes):
    data = {**MINIMAL, **changes}
    return {k: v for k, v in data.items() if v is not ...}
