"""Reading a spec file: refuse what is not a plain small UTF-8 file, parse its YAML strictly, validate.

``load_spec(path)`` returns a ``ReleaseSpec`` or raises ``SpecError`` whose message names the file
and the field, e.g. ``include/releases/web.yaml: steps[2]=120: must be a percentage, strictly
increasing, ending at 100``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from canary_operators.exceptions import SpecError
from canary_operators.spec.fields import MAX_SPEC_BYTES
from canary_operators.spec.release import ReleaseSpec
from canary_operators.spec.validation import pydantic_issues, spec_issues


def display_path(path: Path) -> str:
    """The path as a user names it (a symlink by its own name): relative to the project root when inside it."""
    path = Path(path).parent.resolve() / Path(path).name
    for root in path.parents:
        if (root / "dags").is_dir() and (root / "include").is_dir():
            return str(path.relative_to(root))
    return str(path)


def parse_spec(data: Any, source: str) -> ReleaseSpec:
    """Validate already-loaded YAML data. ``source`` names the file in errors."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: (top level): must be a mapping of fields, got {type(data).__name__}")
    if "max_provider_errors" in data:
        raise SpecError(f"{source}: max_provider_errors: replaced by max_provider_outage, a time "
                        "(default 60s), so it no longer depends on poke_interval")
    try:
        spec = ReleaseSpec.model_validate(data, strict=True)  # no booleans or strings as numbers
    except ValidationError as e:
        raise SpecError("\n".join(f"{source}: {issue}" for issue in pydantic_issues(e))) from None
    issues = spec_issues(spec)
    if issues:
        raise SpecError("\n".join(f"{source}: {issue}" for issue in issues))
    return spec


# libyaml's parser when PyYAML has it: about 8 times faster than the pure-Python one, which was a
# third of the DAG processor's time for many specs. Both are safe loaders.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_ALIASES = 100


class _UniqueKeyLoader(_SafeLoader):
    """A safe loader, except that a key given twice in one mapping is an error (a second
    ``checks:`` block must not silently replace the first)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                continue  # an unhashable key: construct_mapping below reports it
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first.start_mark.line + 1})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _refuse_many_aliases(text: str) -> None:
    """A few aliases (``*name``) are fine; many are a "billion laughs" that would blow up in memory
    and time once validated. libyaml's composer cannot be hooked, so count the parser's events;
    a text without ``*`` has no alias and skips this."""
    if "*" not in text:
        return
    aliases = 0
    for event in yaml.parse(text, Loader=_SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise yaml.composer.ComposerError(None, None, f"more than {MAX_ALIASES} aliases (*name)", event.start_mark)


def read_spec_text(path: Path, source: str) -> str:
    """The file's text, refusing what is not a plain, small, UTF-8 file inside its folder.

    Checked with ``os.stat`` before opening, and opened non-blocking, so a named pipe or a
    device never hangs the DAG processor."""
    folder = path.parent.resolve()
    try:
        if path.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(folder):
                raise SpecError(f"{source}: (file): a symlink that leaves the releases folder ({folder}); "
                                "keep the spec itself in the folder")
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise SpecError(f"{source}: (file): not a regular file; a spec must be a plain YAML file")
        if info.st_size > MAX_SPEC_BYTES:
            raise SpecError(f"{source}: (file): {info.st_size} bytes; a spec may have at most {MAX_SPEC_BYTES} bytes")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):  # replaced between stat and open
                raise SpecError(f"{source}: (file): not a regular file; a spec must be a plain YAML file")
            raw = fh.read(MAX_SPEC_BYTES + 1)
    except OSError as e:
        raise SpecError(f"{source}: (file): cannot read: {e.strerror or e}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"{source}: (file): more than {MAX_SPEC_BYTES} bytes; a spec may have at most {MAX_SPEC_BYTES}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise SpecError(f"{source}: (file): not UTF-8: byte 0x{raw[e.start]:02x} at line {line} "
                        f"(offset {e.start}); save the spec as UTF-8") from None


def load_spec(path: Path | str) -> ReleaseSpec:
    """Read and validate one release spec file."""
    path = Path(path)
    source = display_path(path)
    text = read_spec_text(path, source)
    try:
        _refuse_many_aliases(text)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as e:
        if "nesting depth" in str(getattr(e, "problem", "")):  # libyaml's own limit (1,000 levels)
            raise SpecError(f"{source}: (top level): nested too deeply to be a release spec") from None
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise SpecError(f"{source}: {where}not valid YAML: {getattr(e, 'problem', e)}") from None
    except RecursionError:
        raise SpecError(f"{source}: (top level): nested too deeply to be a release spec") from None
    try:
        spec = parse_spec(data, source)
    except RecursionError:
        raise SpecError(f"{source}: (top level): nested too deeply to be a release spec") from None
    if path.stem != spec.name:
        raise SpecError(f"{source}: name={spec.name}: must match the file name ({path.stem})")
    return spec
