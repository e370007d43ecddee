"""Parse durations written in specs: ``30``, ``"30s"``, ``"5m"``, ``"1h30m"``."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_FACTOR = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """Return seconds. Raise ValueError with a readable message on anything else."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (use seconds or e.g. '30s', '5m')")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        elif re.fullmatch(rf"(?:{_PART.pattern})+", text):
            seconds = sum(float(n) * _FACTOR[unit] for n, unit in _PART.findall(text))
        else:
            raise ValueError(f"{value!r} is not a duration (use seconds or e.g. '30s', '5m')")
    else:
        raise ValueError(f"{value!r} is not a duration (use seconds or e.g. '30s', '5m')")
    if seconds < 0:
        raise ValueError(f"{value!r} is negative")
    return seconds
