"""Dataclass configs from YAML files and ``key.path=value`` command-line overrides.

Every stage has a dataclass config. :func:`build_config` fills one from plain data (a YAML
section), strictly: an unknown key, a wrong type or a bad value ends in one
:class:`~rait.errors.ConfigError` that names the file and the full key (``model.dtype``).
Overrides (``--set build.n_van=20``) are parsed as YAML scalars and applied before
validation, so they obey the same rules.

YAML is read with :class:`RaitLoader`, PyYAML's safe loader with YAML 1.2 style numbers:

* floats in every spelling Python writes or users type: ``1e-5``, ``1E-5``, ``2e4``,
  ``1.5e+3``, ``.5``, ``+1.0``, ``1.`` (PyYAML's YAML 1.1 rules read ``1e-5`` as a string);
  ``.inf``/``.nan`` are floats too, but a float field refuses them (not finite);
* integers: decimal (``010`` is ten, not the YAML 1.1 octal eight), ``0x1F``, ``0o17``,
  ``0b101``; ``_`` may separate digits (``1_000``, ``1_000.5``), as in Python;
  ``1:30`` is a string (YAML 1.1 read it as the base-60 number 90);
* a number keeps the text it was written with, so a string field given ``1e5`` or ``007``
  gets that text, not ``100000.0`` or ``7``;
* a key given twice in one mapping (at any depth) is an error naming the file, the line and
  the dotted key, instead of the last one silently winning.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from rait.errors import ConfigError

T = TypeVar("T")

_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_DIGITS = r"[0-9](?:_?[0-9])*"
_INT_RE = re.compile(
    rf"""^(?:[-+]?{_DIGITS}
    |[-+]?0[xX][0-9a-fA-F](?:_?[0-9a-fA-F])*
    |[-+]?0[oO][0-7](?:_?[0-7])*
    |[-+]?0[bB][01](?:_?[01])*)$""",
    re.X,
)
_FLOAT_RE = re.compile(
    rf"""^(?:[-+]?(?:{_DIGITS}\.(?:{_DIGITS})?|\.{_DIGITS})(?:[eE][-+]?{_DIGITS})?
    |[-+]?{_DIGITS}[eE][-+]?{_DIGITS}
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _Written:
    """A number read from YAML that remembers how it was written (``text``), so that a string
    field receives ``007`` or ``1e5`` rather than ``7`` or ``100000.0``. Copies and pickles
    are plain numbers of the ``plain`` type."""

    plain: type
    text: str

    def __new__(cls, value: Any, text: str) -> Any:
        obj = super().__new__(cls, value)  # type: ignore[call-arg]
        obj.text = text
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.plain, (self.plain(self),))


class YamlInt(_Written, int):
    """An integer read from YAML, with its written form (see :class:`_Written`)."""

    plain = int


class YamlFloat(_Written, float):
    """A float read from YAML, with its written form (see :class:`_Written`)."""

    plain = float


def _parse_int(text: str) -> int:
    body = text.replace("_", "")
    sign = -1 if body.startswith("-") else 1
    body = body.lstrip("+-")
    bases = {"0x": 16, "0o": 8, "0b": 2}
    base = bases.get(body[:2].lower())
    return sign * (int(body[2:], base) if base else int(body, 10))


def _parse_float(text: str) -> float:
    body = text.replace("_", "").lower()
    if body.lstrip("+-") == ".inf":
        return -math.inf if body.startswith("-") else math.inf
    if body == ".nan":
        return math.nan
    return float(body)


class RaitLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 style numbers that keep their text (see the module
    docstring); duplicate keys are found by :func:`_check_duplicate_keys`."""

    def construct_yaml_int(self, node: yaml.Node) -> YamlInt:
        text = str(self.construct_scalar(node))  # type: ignore[arg-type]
        try:
            return YamlInt(_parse_int(text), text)
        except ValueError:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {text!r} as an integer", node.start_mark
            ) from None

    def construct_yaml_float(self, node: yaml.Node) -> YamlFloat:
        text = str(self.construct_scalar(node))  # type: ignore[arg-type]
        try:
            return YamlFloat(_parse_float(text), text)
        except ValueError:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {text!r} as a number", node.start_mark
            ) from None


RaitLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
RaitLoader.add_implicit_resolver(_FLOAT_TAG, _FLOAT_RE, list("-+0123456789."))
RaitLoader.add_implicit_resolver(_INT_TAG, _INT_RE, list("-+0123456789"))
RaitLoader.add_constructor(_INT_TAG, RaitLoader.construct_yaml_int)
RaitLoader.add_constructor(_FLOAT_TAG, RaitLoader.construct_yaml_float)


class DuplicateKeyError(Exception):
    """A mapping gives ``key`` (dotted path) twice: at ``line`` and first at ``first_line``."""

    def __init__(self, key: str, line: int, first_line: int):
        super().__init__(f"duplicate key {key!r} (first given at line {first_line})")
        self.key = key
        self.line = line
        self.first_line = first_line


def _check_duplicate_keys(loader: RaitLoader, node: yaml.Node, path: str = "") -> None:
    """Raise DuplicateKeyError for the first key given twice in any mapping under ``node``."""
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(node, path)]
    while stack:
        current, where = stack.pop()
        if id(current) in seen_nodes:  # aliases may point back up the tree
            continue
        seen_nodes.add(id(current))
        if isinstance(current, yaml.SequenceNode):
            for index, item in reversed(list(enumerate(current.value))):
                stack.append((item, f"{where}[{index}]"))
        elif isinstance(current, yaml.MappingNode):
            first_at: dict[Any, int] = {}
            children = []
            for key_node, value_node in current.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base`; keys given here override the merged ones
                label = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
                dotted = f"{where}.{label}" if where else label
                children.append((value_node, dotted))
                if not isinstance(key_node, yaml.ScalarNode):
                    continue  # complex keys: the constructor refuses them (unhashable)
                try:
                    key = loader.construct_object(key_node, deep=True)
                    hash(key)
                except (yaml.YAMLError, TypeError):
                    continue  # the constructor reports it
                line = key_node.start_mark.line + 1
                if key in first_at:
                    raise DuplicateKeyError(dotted, line, first_at[key])
                first_at[key] = line
            stack.extend(reversed(children))


def _load_yaml_text(text: str) -> Any:
    """Parse one YAML document with :class:`RaitLoader`, refusing duplicate keys."""
    loader = RaitLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_duplicate_keys(loader, node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


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
        data = _load_yaml_text(text)
    except DuplicateKeyError as exc:
        raise ConfigError(
            f"{path}:{exc.line}: duplicate key {exc.key!r} (first given at line "
            f"{exc.first_line}); give each key once"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: invalid YAML ({exc.problem})") from None
    except yaml.reader.ReaderError as exc:  # a control character, e.g. NUL
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            f"{path}:{line}: invalid YAML (control character #x{exc.character:04x} is not allowed)"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        kind = {YamlInt: "int", YamlFloat: "float"}.get(type(data), type(data).__name__)
        raise ConfigError(f"{path}: the config must be a mapping, got {kind}")
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
        value = _load_yaml_text(raw) if raw.strip() else ""
    except DuplicateKeyError as exc:
        raise ConfigError(f"override {text!r}: {exc}") from None
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


def _shown(value: Any) -> str:
    """A value for an error message: a number read from YAML as it was written."""
    text = getattr(value, "text", None)
    return text if isinstance(value, (YamlInt, YamlFloat)) and text is not None else repr(value)


def _float_of_text(value: str) -> float | None:
    try:
        return float(value.strip().replace("_", ""))
    except ValueError:
        return None


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
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {_shown(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where}: expected a finite number, got {_shown(value)}")
            return float(value)
        if isinstance(value, str) and (number := _float_of_text(value)) is not None:
            if not math.isfinite(number):
                raise ConfigError(f"{where}: expected a finite number, got {value!r}")
            raise ConfigError(
                f"{where}: expected a number, got the string {value!r} (write it without quotes)"
            )
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (YamlInt, YamlFloat)):
            return value.text  # as written: 1e5 stays "1e5", 007 stays "007"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported config type {_type_name(tp)}")


def _renamed(cls: type, data: Mapping[str, Any], origin: str, prefix: str) -> Mapping[str, Any]:
    """``data`` with the keys a config renamed (``cls.RENAMED``: old key -> new dotted key)
    moved to their new place, so older configs and the ``stage.json`` of older runs still load;
    an old and a new key given together is an error."""
    renamed: dict[str, str] = getattr(cls, "RENAMED", {})
    if not any(old in data for old in renamed):
        return data
    out = _deep_copy(dict(data))
    for old, new in renamed.items():
        if old not in out:
            continue
        *sections, last = new.split(".")
        node = out
        for section in sections:
            node = node.setdefault(section, {})
        if last in node:
            where = f"{prefix}." if prefix else ""
            raise ConfigError(
                f"{origin}: {where}{old} is the old name of {where}{new}; give only {where}{new}"
            )
        node[last] = out.pop(old)
    return out


def build_config(
    cls: type[T], data: Mapping[str, Any] | None, origin: str = "config", prefix: str = ""
) -> T:
    """Build the dataclass ``cls`` from ``data`` strictly (see the module docstring).

    Fields missing from ``data`` keep their defaults; a ``validate()`` method, when the
    dataclass has one, runs at the end.
    """
    data = _renamed(cls, data or {}, origin, prefix)
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
