"""Small file helpers shared by every stage: atomic writes, JSON/JSONL, stable hashing.

"Nothing is half-written": every output file is written to a temporary sibling and renamed into
place, so an interrupted or failed stage leaves either the old file or none at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from rait.errors import ConfigError, DataError, Location


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


@contextlib.contextmanager
def staged_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Write a set of files as one: yield a hidden staging folder beside ``path``; on success
    its files are renamed into ``path`` (renames cannot fail for lack of space), on any error
    (a full disk, a kill) it is removed and ``path`` is left as it was."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    )
    try:
        yield staging
        target.mkdir(parents=True, exist_ok=True)
        for item in sorted(staging.iterdir()):
            os.replace(item, target / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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


# --------------------------------------------------------------------------- output checks
def _first_existing(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _check_writable_folder(folder: Path, what: str) -> None:
    """``folder`` (existing) accepts a new file: tried for real (``os.access`` is no guide
    for root, nor for a read-only mount)."""

    try:
        fd, tmp = tempfile.mkstemp(prefix=".rait-write-check.", dir=folder)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot write in {folder}: {exc.strerror}") from None
    os.close(fd)
    os.unlink(tmp)


def check_output_dir(path: str | os.PathLike[str], what: str = "--out") -> Path:
    """Check, before any work, that ``path`` can be an output folder: not an existing file,
    and the folder (or its nearest existing parent) writable. A
    :class:`~rait.errors.ConfigError` names the path and the reason."""

    target = Path(path)
    if str(path) == "":
        raise ConfigError(f"{what} is empty: name an output folder")
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{what} {target} is a file; expected a folder")
    base = _first_existing(target)
    if not base.is_dir():
        raise ConfigError(f"{what} {target}: {base} is a file, so no folder can be made there")
    _check_writable_folder(base, f"{what} {target}")
    return target


def check_output_file(
    path: str | os.PathLike[str],
    what: str = "--out",
    inputs: Iterable[str | os.PathLike[str] | None] = (),
) -> Path:
    """Check, before any work, that ``path`` can be written as a file: not a folder, its
    folder writable, and not one of the command's own ``inputs`` (which it would overwrite)."""

    target = Path(path)
    if str(path) == "":
        raise ConfigError(f"{what} is empty: name an output file")
    if target.is_dir():
        raise ConfigError(f"{what} {target} is a folder; expected a file name")
    for source in inputs:
        if source is not None and same_path(target, source):
            raise ConfigError(
                f"{what} {target} is also this command's input {source}: writing it would "
                "overwrite the input; choose another output file"
            )
    base = _first_existing(target.parent)
    if not base.is_dir():
        raise ConfigError(f"{what} {target}: {base} is a file, so no folder can be made there")
    _check_writable_folder(base, f"{what} {target}")
    return target


def same_path(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name the same file or folder (links and ``..`` resolved)."""
    pa, pb = Path(a), Path(b)
    if pa.exists() and pb.exists():
        return os.path.samefile(pa, pb)
    return pa.resolve() == pb.resolve()


def is_within(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (both resolved)."""
    p, f = Path(path).resolve(), Path(folder).resolve()
    return p == f or f in p.parents


def describe_os_error(exc: OSError) -> str:
    """One line for an :class:`OSError`: the file(s) and the system's reason."""
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{' -> '.join(names)}: {reason}" if names else reason
