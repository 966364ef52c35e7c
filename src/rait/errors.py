"""User-facing errors.

Every problem a user can cause (a malformed file, a missing field, an impossible setting, an
unknown model) ends in one :class:`RaitError` whose message names where the problem is
(file, line or record, field). The CLI prints that one message and exits non-zero; library
tracebacks are never shown for such problems.
"""

from __future__ import annotations

from dataclasses import dataclass


class RaitError(Exception):
    """Base class of every error the user can fix; its message is complete and printable."""

    exit_code = 2


@dataclass(frozen=True)
class Location:
    """Where a problem is: a file (or hub dataset), a line or record number, and a field."""

    source: str | None = None
    line: int | None = None
    record: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        parts: list[str] = []
        if self.source is not None:
            parts.append(self.source + (f":{self.line}" if self.line is not None else ""))
        elif self.line is not None:
            parts.append(f"line {self.line}")
        if self.record is not None:
            parts.append(f"record {self.record!r}")
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        return ", ".join(parts)


class DataError(RaitError):
    """A dataset file or record is malformed."""

    def __init__(self, message: str, where: Location | None = None):
        self.where = where or Location()
        self.problem = message
        prefix = str(self.where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ConfigError(RaitError):
    """A configuration file, field or override is invalid."""


class ModelError(RaitError):
    """A model or tokenizer cannot be loaded or lacks what a stage needs."""


class LaunchError(RaitError):
    """A stage run in other processes (shards, a training launcher) failed; the message names
    the command and its log."""


class VacuousSelectionWarning(UserWarning):
    """A method's draw chose nothing: its pool was no larger than what was drawn from it, so the
    built set is the whole pool and the method degenerates to another (``rait build``)."""
