"""Frozen config dataclasses as command-line flags: one field, one ``--flag`` with the field's help.

Keeps the CLI and the configs from drifting apart without a dependency on a CLI framework. A run config is
the same thing as YAML: ``write_run_config`` records every flag of a run (``run_config.yaml``), and
``run_config_defaults`` reads such a file (or a recipe in ``configs/recipes/``) back as the flags' defaults,
so ``--config FILE`` plus any flag given after it reproduces or varies a run.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type[Any], *, prefix: str = "") -> None:
    """Add one flag per field of the dataclass ``cls`` (bools become --x / --no-x); nested config dataclasses
    add their own fields, flat, so their names must not collide."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            add_config_arguments(parser, hints[f.name], prefix=prefix)
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):  # nested configs get their own group (see config_from_args)
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        # argparse %-formats help (for %(default)s): a literal "%" in a help text or a default must be doubled
        help_text = f.metadata.get("help", "").replace("%", "%%")
        shown = str(default).replace("%", "%%")
        dest = prefix + f.name
        if kind is bool:
            group.add_argument(_flag(dest), dest=dest, action=argparse.BooleanOptionalAction, default=default,
                               help=help_text)
            continue
        origin = typing.get_origin(kind)
        if origin is tuple:
            item = typing.get_args(kind)[0]
            group.add_argument(_flag(dest), dest=dest, type=item, nargs="+", default=default,
                               help=f"{help_text} (default: {shown})")
            continue
        if origin in (typing.Union, types.UnionType):  # Optional[X]
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        group.add_argument(_flag(dest), dest=dest, type=kind, default=default,
                           help=f"{help_text} (default: {shown})")


def config_from_args(cls: type[T], args: argparse.Namespace, *, prefix: str = "") -> T:
    """Build ``cls`` from the flags that ``add_config_arguments`` added."""
    values = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if dataclasses.is_dataclass(hints[f.name]):
            values[f.name] = config_from_args(hints[f.name], args, prefix=prefix)
            continue
        value = getattr(args, prefix + f.name)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def flat_values(config: Any) -> dict[str, Any]:
    """The config's fields as its flags name them: nested configs' fields flat, tuples as lists."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            values |= flat_values(value)
        else:
            values[f.name] = list(value) if isinstance(value, tuple) else value
    return values


def write_run_config(config: Any, out: Path) -> Path:
    """``out/run_config.yaml``: every flag of this run, to read back with ``--config``."""
    import yaml

    from medscope.io import write_text_atomic

    text = f"# {type(config).__name__}: every flag of this run (medscope ... --config this-file)\n"
    return write_text_atomic(out / "run_config.yaml", text + yaml.safe_dump(flat_values(config), sort_keys=False))


def run_config_defaults(path: str | Path, cls: type[Any]) -> dict[str, Any]:
    """Flag defaults from a YAML run config for ``cls``; nested sections are read flat, as the flags are. A key
    that is no flag of ``cls`` is an error naming it."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"--config {path}: cannot read it as YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of flag names to values")
    flat: dict[str, Any] = {}

    def add(mapping: dict[str, Any]) -> None:
        for key, value in mapping.items():
            if isinstance(value, dict):
                add(value)
            else:
                flat[str(key).replace("-", "_")] = value

    add(data)
    known = set(flat_values(cls()))
    unknown = sorted(set(flat) - known)
    if unknown:
        raise ValueError(f"--config {path}: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a flag "
                         f"here; the flags are: {', '.join(sorted(known))}")
    return flat


def differences(old: dict[str, Any], new: dict[str, Any], *, ignore: frozenset[str] = frozenset(),
                prefix: str = "") -> list[str]:
    """What two recorded configs (manifests, build records) disagree on, as ``path: old then, new now`` lines;
    top-level keys in ``ignore`` are not compared (what may differ: a shard's number, the code's version)."""
    out = []
    for key in sorted((set(old) | set(new)) - ignore):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, prefix=f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} then, {b!r} now")
    return out
