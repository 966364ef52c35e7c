"""Small file helpers shared by every stage: atomic writes, JSON/JSONL, stable hashing.

"Nothing is half-written": every output file is written to a temporary sibling and renamed into
place, so an interrupted or failed stage leaves either the old file or none at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; rename it onto ``path`` only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs follow the umask
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def dumps(obj: Any) -> str:
    """Compact, key-order-preserving JSON with real UTF-8 characters."""
    return json.dumps(obj, ensure_ascii=False)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    with atomic_open(path) as handle:
        json.dump(obj, handle, ensure_ascii=False, indent=2, sort_keys=False)
        handle.write("\n")


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> int:
    """Write ``rows`` as JSON Lines atomically; returns the number of rows."""
    count = 0
    with atomic_open(path) as handle:
        for row in rows:
            handle.write(dumps(row) + "\n")
            count += 1
    return count


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def stable_hash(obj: Any) -> str:
    """SHA-256 of a JSON-serialisable object with sorted keys (configs, manifests)."""
    payload = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def file_digest(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (inputs recorded in a stage's manifest)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_jsonl_rows(path: str | os.PathLike[str], required: Sequence[str] = ()) -> list[dict]:
    """The objects of a JSONL file, each with its line number under ``"_line"``. Any problem
    (unreadable, not UTF-8, bad JSON, not an object, a missing ``required`` field, no rows)
    is a :class:`~rait.errors.DataError` naming the file, line and field."""
    from rait.errors import DataError, Location

    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", Location(where)) from None
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text", Location(where)) from None
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc.msg})", Location(where, number)) from None
        if not isinstance(row, dict):
            raise DataError("expected a JSON object", Location(where, number))
        for key in required:
            if key not in row:
                raise DataError("missing field", Location(where, number, field=key))
        row["_line"] = number
        rows.append(row)
    if not rows:
        raise DataError("the file has no rows", Location(where))
    return rows


def read_jsonl_by_id(path: str | os.PathLike[str], required: Sequence[str] = ()) -> dict[str, dict]:
    """:func:`read_jsonl_rows` keyed by each row's ``id`` (required); a repeated id is a
    :class:`~rait.errors.DataError` naming both lines."""
    from rait.errors import DataError, Location

    by_id: dict[str, dict] = {}
    for row in read_jsonl_rows(path, ("id", *[k for k in required if k != "id"])):
        key = str(row["id"])
        if key in by_id:
            raise DataError(
                f"duplicate id {key!r} (first on line {by_id[key]['_line']})",
                Location(str(path), row["_line"], field="id"),
            )
        by_id[key] = row
    return by_id


def row_number(
    row: dict,
    key: str,
    path: str | os.PathLike[str],
    lo: float | None = None,
    hi: float | None = None,
) -> float:
    """``row[key]`` as a float, checked: a number (not a bool), finite, within ``[lo, hi]``;
    otherwise a :class:`~rait.errors.DataError` naming the file, the row's line and ``key``."""
    import math

    from rait.errors import DataError, Location

    value = row.get(key)
    where = Location(str(path), row["_line"], field=key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"expected a number, got {value!r}", where)
    if not math.isfinite(value):
        raise DataError(f"{value} is not a finite number", where)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise DataError(f"{value} is outside {bounds}", where)
    return float(value)
