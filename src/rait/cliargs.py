"""Command-line flags derived from the stage configs' dataclasses.

A command names the config keys it offers as flags (``"n_samples"``, ``"model.name"``); each
flag's type, choices, default and help come from the dataclass field (its annotation, its
default, and ``metadata={"help": ..., "choices": ...}``, the convention of
``transformers.HfArgumentParser``). A given flag becomes a ``key=value`` override, applied after
``--config FILE`` and ``--set key=value`` (the flag wins), so flags, files and overrides obey the
same validation (:func:`rait.config.load_config`).

Why not ``HfArgumentParser`` itself: rait's configs are nested (``model.name``, ``data.path``,
``train.epochs``) and layered (a YAML file, then flags, then ``--set``); ``HfArgumentParser``
flattens one level of fields and fills every default into the namespace, so a flag that was not
given would silently override the config file.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from rait.errors import ConfigError

_MISSING = dataclasses.MISSING


def option(
    default: Any = _MISSING,
    *,
    help: str,
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None,
    metavar: str | None = None,
    default_factory: Any = _MISSING,
) -> Any:
    """A dataclass field with its command-line help (and choices: a sequence, or a function
    returning one, for registries that grow at run time; ``metavar``: the value's shape)."""
    metadata: dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"] = choices
    if metavar is not None:
        metadata["metavar"] = metavar
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line flag for the config key ``key`` (dotted for nested sections).

    ``flag``: its spelling (default ``--`` + the last key part with ``-`` for ``_``; a bool
    field that defaults to true gets ``--no-...``); ``help``: overrides the field's help;
    ``nargs``: ``"+"`` for a list given as one flag with several values (default: a list
    flag is repeatable); ``positional``: an argument without a flag."""

    key: str
    flag: str | None = None
    help: str | None = None
    nargs: str | None = None
    positional: bool = False

    @property
    def dest(self) -> str:
        return "cfg__" + self.key.replace(".", "__")


def flag(spec: str | Flag) -> Flag:
    """A :class:`Flag`, or its short form: ``key``, ``key=--spelling``, ``key+`` (a list given
    as one flag with several values), ``<key>`` / ``<key+>`` (positional)."""
    if isinstance(spec, Flag):
        return spec
    positional = spec.startswith("<") and spec.endswith(">")
    spec = spec.strip("<>")
    key, _, spelling = spec.partition("=")
    nargs = "+" if key.endswith("+") else None
    return Flag(key.rstrip("+"), spelling or None, nargs=nargs, positional=positional)


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


@functools.cache
def resolve_field(cls: type, key: str) -> tuple[dataclasses.Field, Any, Any]:
    """The dataclass field at the dotted ``key`` of ``cls``, its type (``Optional`` removed)
    and its default as seen from ``cls`` (a nested section's own default counts). Cached: the
    parser and the overrides ask for the same fields, and each lookup builds a default config."""
    owner: Any = cls
    default_obj: Any = _default_instance(cls)
    parts = key.split(".")
    for depth, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(owner)}
        if part not in fields:
            raise ConfigError(f"flag for unknown config key {key!r} of {cls.__name__}")
        fld = fields[part]
        tp = _unwrap_optional(typing.get_type_hints(owner)[part])
        default_obj = getattr(default_obj, part, None) if default_obj is not None else None
        if depth == len(parts) - 1:
            if default_obj is None and fld.default is not _MISSING:
                default_obj = fld.default
            return fld, tp, default_obj
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"flag key {key!r}: {part!r} is not a section")
        owner = tp
        if default_obj is None:
            default_obj = _default_instance(tp)
    raise AssertionError("unreachable")


def _default_instance(cls: type) -> Any:
    try:
        return cls()
    except TypeError:  # a required field (no default)
        return None


def _choices(fld: dataclasses.Field) -> list[str] | None:
    choices = fld.metadata.get("choices")
    if choices is None:
        return None
    return list(choices() if callable(choices) else choices)


def _spelling(spec: Flag, tp: Any, default: Any) -> str:
    if spec.flag:
        return spec.flag
    name = spec.key.rsplit(".", 1)[-1].replace("_", "-")
    return f"--no-{name}" if tp is bool and default is True else f"--{name}"


def add_flags(
    parser: argparse.ArgumentParser, cls: type, specs: Sequence[str | Flag]
) -> list[Flag]:
    """Add a flag to ``parser`` for each spec; returns the parsed specs (for
    :func:`flag_overrides`). Every flag's namespace default is None: only given flags count."""
    out = []
    for spec in map(flag, specs):
        fld, tp, default = resolve_field(cls, spec.key)
        text = spec.help or fld.metadata.get("help")
        if text is None:
            raise ConfigError(f"{cls.__name__}.{spec.key} has no help: give option(help=...)")
        kwargs: dict[str, Any] = {"help": text}
        if spec.positional:
            kwargs["nargs"] = spec.nargs
            kwargs["metavar"] = spec.key.rsplit(".", 1)[-1].upper()
            parser.add_argument(spec.dest, **{k: v for k, v in kwargs.items() if v is not None})
            out.append(spec)
            continue
        origin = typing.get_origin(tp)
        if tp is bool:
            kwargs.update(action="store_const", const=not default if default else True)
        elif origin in (list, Sequence):
            kwargs.update({"nargs": "+"} if spec.nargs else {"action": "append"})
            kwargs["metavar"] = spec.key.rsplit(".", 1)[-1].upper().rstrip("S")
        elif origin is dict:
            kwargs.update(action="append", metavar=fld.metadata.get("metavar", "KEY=VALUE"))
        else:
            kwargs["type"] = {int: int, float: float}.get(tp, str)
            choices = _choices(fld)
            if choices and callable(fld.metadata["choices"]):
                # a registry: listed in the help, checked by the config (its one-line error)
                kwargs["help"] = f"{text}; one of: {', '.join(choices)}"
                kwargs["metavar"] = "{" + ",".join(choices) + "}" if len(choices) <= 4 else None
                kwargs["metavar"] = kwargs["metavar"] or spec.key.rsplit(".", 1)[-1].upper()
            elif choices:
                kwargs["choices"] = choices
            else:
                kwargs["metavar"] = spec.key.rsplit(".", 1)[-1].upper()
            if default is not None and default is not _MISSING and "default" not in text:
                kwargs["help"] = f"{kwargs['help']} (default: {default})"
        spellings = _spelling(spec, tp, default).split("/")  # "--tau-mu/--tau-c": an alias
        parser.add_argument(*spellings, dest=spec.dest, default=None, **kwargs)
        out.append(spec)
    return out


def _pairs(flag_name: str, pairs: Sequence[str], shape: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"{flag_name} {pair!r} must look like {shape}")
        key, value = (part.strip() for part in pair.split("=", 1))
        if not key or not value:
            raise ConfigError(f"{flag_name} {pair!r} has an empty side")
        out[key] = value
    return out


def flag_overrides(args: argparse.Namespace, cls: type, specs: Sequence[Flag]) -> list[str]:
    """``key=value`` overrides for the flags that were given: numbers as Python writes them,
    strings, lists and mappings as JSON (which YAML reads back exactly: a path ``yes`` or
    ``007`` stays a string)."""
    overrides = []
    for spec in specs:
        value = getattr(args, spec.dest, None)
        if value is None:
            continue
        fld, tp, _ = resolve_field(cls, spec.key)
        if typing.get_origin(tp) is dict:
            shape = fld.metadata.get("metavar", "KEY=VALUE").lower()
            value = _pairs(spec.flag or "--" + spec.key, value, shape)
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value)
        else:
            text = json.dumps(value, ensure_ascii=False)
        overrides.append(f"{spec.key}={text}")
    return overrides
