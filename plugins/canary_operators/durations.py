"""Parse durations written in specs: ``30``, ``"30s"``, ``"5m"``, ``"1h30m"``."""

from __future__ import annotations

import math
import re

MAX_SECONDS = 7 * 24 * 3600.0  # a week: longer is a typo (1.0e+20), and timedelta overflows
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_FACTOR = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """Return seconds, finite and at most 7 days. Raise ValueError with a readable message on anything else."""
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
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a finite duration")
    if seconds < 0:
        raise ValueError(f"{value!r} is negative")
    if seconds > MAX_SECONDS:
        raise ValueError(f"{value!r} is longer than 7 days ({MAX_SECONDS:g}s)")
    return seconds
