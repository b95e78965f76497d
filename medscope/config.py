"""Frozen config dataclasses as command-line flags: one field, one ``--flag`` with the field's help.

Keeps the CLI and the configs from drifting apart without a dependency on a CLI framework.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
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
        help_text = f.metadata.get("help", "")
        dest = prefix + f.name
        if kind is bool:
            group.add_argument(_flag(dest), dest=dest, action=argparse.BooleanOptionalAction, default=default,
                               help=help_text)
            continue
        origin = typing.get_origin(kind)
        if origin is tuple:
            item = typing.get_args(kind)[0]
            group.add_argument(_flag(dest), dest=dest, type=item, nargs="+", default=default,
                               help=f"{help_text} (default: {default})")
            continue
        if origin in (typing.Union, types.UnionType):  # Optional[X]
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        group.add_argument(_flag(dest), dest=dest, type=kind, default=default,
                           help=f"{help_text} (default: {default})")


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
