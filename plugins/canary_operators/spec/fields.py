"""What every spec model is built from: the strict base model, durations, names, versions and action templates."""

from __future__ import annotations

import re
from string import Formatter
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

from canary_operators.durations import parse_duration

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
# Versions end up in PromQL label matchers, webhook bodies and command arguments.
# Always ``fullmatch``: Python's ``$`` also matches before a trailing newline.
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
# The same rule for JSON schema (the trigger form, checked by Python's re.search and by the UI's
# JavaScript): ``(?![\s\S])`` is "end of text" in both, where ``$`` would let "v1\n" through.
VERSION_SCHEMA_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}(?![\s\S])"
MAX_SPEC_BYTES = 1024 * 1024
MAX_TAG_LENGTH = 100  # Airflow's limit for a DAG tag
METRIC_NAME_PATTERN = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
DEFAULT_STEPS = [1, 5, 25, 50, 100]
STEPS_RULE = "must be a percentage, strictly increasing, ending at 100"

Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


TEMPLATE_FIELDS = ("version", "stable_version", "release")
_TEMPLATE_HELP = "use {version}, {stable_version} or {release}, and write literal braces as {{ and }}"


def _template(value: Any) -> Any:
    """A ``str.format`` template with only the placeholders actions fill in, checked at load so
    that ``{versoin}``, ``{0}`` or a JSON argument fails here and not in the deploy or rollback."""
    if isinstance(value, str):
        try:
            parts = list(Formatter().parse(value))
        except ValueError as e:
            raise ValueError(f"not a valid template ({e}); {_TEMPLATE_HELP}") from None
        for _, name, spec, conversion in parts:
            if name is None:
                continue
            if name not in TEMPLATE_FIELDS:
                shown = "{" + name + "}" if name.strip() else "{}"
                raise ValueError(f"unknown placeholder {shown}; {_TEMPLATE_HELP}")
            if spec or conversion:
                raise ValueError(f"placeholder {{{name}}} takes no format spec or conversion; {_TEMPLATE_HELP}")
    return value


_image_template = _template
Template = Annotated[str, BeforeValidator(_template)]
