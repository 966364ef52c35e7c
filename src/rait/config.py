"""Dataclass configs from YAML files and ``key.path=value`` command-line overrides.

Every stage has a dataclass config. :func:`build_config` fills one from plain data (a YAML
section), strictly: an unknown key, a wrong type or a bad value ends in one
:class:`~rait.errors.ConfigError` that names the file and the full key (``model.dtype``).
Overrides (``--set build.n_van=20``) are parsed as YAML scalars and applied before
validation, so they obey the same rules.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from rait.errors import ConfigError

T = TypeVar("T")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; syntax errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 ({exc.reason})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: invalid YAML ({exc.problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=3"`` -> ``(["a", "b"], 3)``; the value is read as a YAML scalar/list."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not all(parts):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with every ``key.path=value`` override applied."""
    out = _deep_copy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, origin: str) -> Any:
    """Check (and mildly coerce) ``value`` against the annotation ``tp``."""
    where = f"{origin}: {key}"
    if tp is Any:
        return value
    args = typing.get_args(tp)
    container = typing.get_origin(tp)
    if container in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, origin)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[-1] if errors else f"{where}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a section (mapping), got {value!r}")
        return build_config(tp, value, origin=origin, prefix=key)
    if container in (list, tuple, Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return [_coerce(v, item, f"{key}[{i}]", origin) for i, v in enumerate(value)]
    if container in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        val_tp = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, val_tp, f"{key}.{k}", origin) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported config type {_type_name(tp)}")


def build_config(
    cls: type[T], data: Mapping[str, Any] | None, origin: str = "config", prefix: str = ""
) -> T:
    """Build the dataclass ``cls`` from ``data`` strictly (see the module docstring).

    Fields missing from ``data`` keep their defaults; a ``validate()`` method, when the
    dataclass has one, runs at the end.
    """
    data = data or {}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"{origin}: unknown key(s) {', '.join(where + str(k) for k in unknown)}; "
            f"known keys{' of ' + prefix if prefix else ''}: {', '.join(fields)}"
        )
    kwargs = {
        name: _coerce(value, hints[name], f"{prefix}.{name}" if prefix else name, origin)
        for name, value in data.items()
    }
    cfg = cls(**kwargs)
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as exc:
            message = str(exc)
            if prefix and not message.startswith(prefix):
                message = f"{prefix}: {message}"  # which section of the config
            if not message.startswith(f"{origin}: "):
                message = f"{origin}: {message}"
            raise ConfigError(message) from None
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain data (YAML/JSON ready)."""
    return dataclasses.asdict(cfg)


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Load ``cls`` from an optional YAML file plus overrides."""
    data = load_yaml(path) if path else {}
    origin = str(path) if path else "config"
    if overrides:
        data = apply_overrides(data, overrides)
        origin = f"{origin} (with --set overrides)"
    return build_config(cls, data, origin=origin)
