"""Local dataset files: JSONL, JSON, CSV/TSV and Parquet, with a field mapping for foreign names.

Every row is read with its location (file and line for JSONL/CSV, file and record index for
JSON/Parquet) so that every problem names where it is. A *field mapping* renames foreign
columns onto the canonical fields of :mod:`rait.data.records`:

* ``{"question": "prompt"}`` reads the canonical ``question`` from the column ``prompt``;
* ``{"question": "question.stem"}`` follows nested objects (dots);
* ``{"choices": "A,B,C,D"}`` gathers several columns into the list of options.

Columns a mapping does not use are kept in the record's ``meta``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rait.data.records import CORE_FIELDS, QARecord, dataset_problems, parse_record
from rait.errors import DataError, Location
from rait.fileio import write_jsonl

FILE_FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")
_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def detect_format(path: str | Path) -> str:
    """The file format from the extension; a DataError for an unknown one."""
    suffix = Path(path).suffix.lower()
    if suffix not in _EXTENSIONS:
        known = ", ".join(sorted(_EXTENSIONS))
        raise DataError(
            f"unknown file format {suffix or '(no extension)'!r}; known extensions: {known} "
            "(or pass the format explicitly)",
            Location(str(path)),
        )
    return _EXTENSIONS[suffix]


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise DataError("file not found", Location(str(path)))
    if path.is_dir():
        raise DataError("is a directory, expected a file", Location(str(path)))


def decode_utf8(path: Path, data: bytes) -> str:
    """UTF-8 text of a file's bytes; a DataError naming the line and column otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at column {column}); "
            "re-encode the file as UTF-8",
            Location(str(path), line),
        ) from None


def iter_raw_rows(path: str | Path, fmt: str = "auto") -> Iterator[tuple[Location, Any]]:
    """Yield ``(location, row)`` for every row of a local file, in file order."""
    path = Path(path)
    _check_exists(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    source = str(path)
    if fmt == "jsonl":
        text = decode_utf8(path, path.read_bytes())
        # split on "\n" only: JSON strings may hold U+2028 and friends, which splitlines() breaks
        first = True
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                if first:
                    _refuse_whole_json(text, Location(source, number))
                raise DataError(
                    f"invalid JSON ({exc.msg} at column {exc.colno})", Location(source, number)
                ) from None
            if first and isinstance(row, list):
                raise DataError(
                    f"{_JSON_ARRAY_IN_JSONL}{_json_hint('json')}", Location(source, number)
                )
            first = False
            yield Location(source, number), row
    elif fmt == "json":
        text = decode_utf8(path, path.read_bytes())
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            hint = ""
            if exc.msg == "Extra data" and _first_line_is_object(text):
                hint = (
                    ": this looks like JSONL (one JSON object per line); rename the file to "
                    f".jsonl{_json_hint('jsonl')}"
                )
            raise DataError(
                f"invalid JSON ({exc.msg} at column {exc.colno}){hint}",
                Location(source, exc.lineno),
            ) from None
        if isinstance(data, Mapping):
            lists = [
                k
                for k, v in data.items()
                if isinstance(v, list) and all(isinstance(item, Mapping) for item in v)
            ]
            if len(lists) > 1:  # {"Data": [...], "Skipped": []}: the list that holds records
                lists = [k for k in lists if data[k]] or lists
            if len(lists) != 1:
                if not lists:
                    raise DataError(
                        "holds one JSON object, not a list of records: a .json file must hold "
                        "a JSON array of records ([{...}, {...}]) or an object with one list "
                        'of records ({"Data": [...]}); wrap a single record in [ ], or use a '
                        ".jsonl file (--format jsonl) for one record per line",
                        Location(source),
                    )
                raise DataError(
                    "expected a list of records, or an object holding exactly one list of "
                    f"records (found several: {', '.join(map(str, lists))})",
                    Location(source),
                )
            data = data[lists[0]]
        if not isinstance(data, list):
            raise DataError(
                "expected a JSON array of records (or an object holding one list of records), "
                f"got {_json_kind(data)}",
                Location(source),
            )
        for index, row in enumerate(data):
            yield Location(source, record=f"#{index}"), row
    elif fmt in ("csv", "tsv"):
        text = decode_utf8(path, path.read_bytes())
        _refuse_json_as_csv(text, fmt, source)
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if fmt == "tsv" else ",")
        if not reader.fieldnames:
            return
        line_start = 2
        for row in reader:
            if None in row:
                raise DataError(
                    f"row has {len(reader.fieldnames) + len(row[None])} columns, the header "
                    f"has {len(reader.fieldnames)}",
                    Location(source, line_start),
                )
            yield Location(source, line_start), _decode_csv_cells(row)
            line_start = reader.line_num + 1
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several unrelated types
            raise DataError(f"cannot read Parquet: {exc}", Location(source)) from None
        for index, row in enumerate(table.to_pylist()):
            yield Location(source, record=f"row {index}"), row
    else:
        raise DataError(
            f"unknown format {fmt!r}; known: {', '.join(FILE_FORMATS)}", Location(source)
        )


_JSON_ARRAY_IN_JSONL = (
    "this looks like a JSON array, not JSONL (one JSON object per line): rename the file to .json"
)


def _json_hint(fmt: str) -> str:
    return f" or use --format {fmt} (`format: {fmt}` in a config)"


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return kinds.get(type(value), type(value).__name__)


def _first_line(text: str) -> tuple[int, str]:
    """The first non-blank line of ``text`` and its number (``(0, "")`` when there is none),
    without splitting the whole text."""
    start, number = 0, 1
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        if text[start:end].strip():
            return number, text[start:end]
        start, number = end + 1, number + 1
    return 0, ""


def _first_line_is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(_first_line(text)[1]), dict)
    except json.JSONDecodeError:
        return False


def _refuse_whole_json(text: str, where: Location) -> None:
    """A JSONL file whose first line is not JSON: raise a clear DataError when the whole file
    is one (pretty-printed) JSON document."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return
    if isinstance(data, list):
        raise DataError(f"{_JSON_ARRAY_IN_JSONL}{_json_hint('json')}", where)
    raise DataError(
        "this file holds one JSON object spread over several lines, not JSONL (one JSON object "
        "per line): write each record on one line",
        where,
    )


def _refuse_json_as_csv(text: str, fmt: str, source: str) -> None:
    """Raise a clear DataError when a file read as CSV/TSV holds JSON or JSONL."""
    number, first = _first_line(text)
    if first.lstrip()[:1] not in ("{", "["):
        return
    try:
        one_line = isinstance(json.loads(first), dict)  # an object per line: JSONL
    except json.JSONDecodeError:
        try:
            json.loads(text)  # a pretty-printed JSON document
        except json.JSONDecodeError:
            return
        one_line = False
    kind, suggest = ("JSONL (one JSON object per line)", "jsonl") if one_line else ("JSON", "json")
    raise DataError(
        f"this looks like {kind}, not {fmt.upper()}: use --format {suggest} (`format: "
        f"{suggest}` in a config)",
        Location(source, number),
    )


def _decode_csv_cells(row: dict[str, str]) -> dict[str, Any]:
    """CSV cells are text; a cell holding a JSON list (e.g. answers) is decoded as a list."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        stripped = value.strip() if isinstance(value, str) else value
        if isinstance(stripped, str) and stripped.startswith("[") and stripped.endswith("]"):
            try:
                decoded = json.loads(stripped)
            except json.JSONDecodeError:
                decoded = value
            out[key] = decoded if isinstance(decoded, list) else value
        else:
            out[key] = value
    return out


def _get_path(row: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    value: Any = row
    for part in dotted.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            return False, None
    return True, value


def apply_field_map(
    row: Any, field_map: Mapping[str, str] | None, where: Location
) -> dict[str, Any]:
    """Rename a foreign row onto canonical fields (see the module docstring)."""
    if not isinstance(row, Mapping):
        raise DataError(f"expected an object, got {type(row).__name__}", where)
    if not field_map:
        return dict(row)
    unknown = [k for k in field_map if k not in CORE_FIELDS]
    if unknown:
        raise DataError(
            f"field mapping names unknown canonical field(s) {unknown}; "
            f"canonical fields: {', '.join(CORE_FIELDS)}"
        )
    out: dict[str, Any] = {}
    used: set[str] = set()
    for canonical, spec in field_map.items():
        columns = [c.strip() for c in spec.split(",")] if canonical == "choices" else [spec]
        values = []
        for column in columns:
            found, value = _get_path(row, column)
            if not found:
                raise DataError(
                    f"column {column!r} (mapped to '{canonical}') is missing; "
                    f"available: {', '.join(map(str, row))}",
                    Location(where.source, where.line, where.record, column),
                )
            used.add(column.split(".")[0])
            values.append(value)
        out[canonical] = values if len(columns) > 1 else values[0]
    for key, value in row.items():
        if key not in used and key not in out:
            out[key] = value
    return out


@dataclass
class ScanResult:
    """Everything read from a file: valid records, their locations, and every problem."""

    source: str
    records: list[QARecord] = field(default_factory=list)
    locations: list[Location] = field(default_factory=list)
    problems: list[DataError] = field(default_factory=list)
    rows: int = 0

    def raise_first(self) -> None:
        """Raise the first problem, mentioning how many more there are."""
        if not self.problems:
            return
        first = self.problems[0]
        more = len(self.problems) - 1
        if more:
            raise DataError(
                f"{first.problem} (and {more} more problem{'s' * (more > 1)}; "
                f"run `rait data inspect {self.source}` to list them)",
                first.where,
            )
        raise first


def scan_rows(
    rows: Iterator[tuple[Location, Any]],
    source: str,
    field_map: Mapping[str, str] | None = None,
) -> ScanResult:
    """Validate every row and the dataset as a whole, collecting all problems."""
    result = ScanResult(source)
    for where, row in rows:
        result.rows += 1
        try:
            mapped = apply_field_map(row, field_map, where)
        except DataError as exc:
            result.problems.append(exc)
            continue
        record, problems = parse_record(mapped, where)
        if record is None:
            result.problems.extend(problems)
        else:
            result.records.append(record)
            result.locations.append(where)
    if result.rows == 0:
        result.problems.append(DataError("the dataset is empty (no records)", Location(source)))
    elif result.records:
        result.problems.extend(dataset_problems(result.records, source, result.locations))
    return result


def scan_file(
    path: str | Path, fmt: str = "auto", field_map: Mapping[str, str] | None = None
) -> ScanResult:
    """Read a local file and validate everything in it (file-level errors still raise)."""
    return scan_rows(iter_raw_rows(path, fmt), str(path), field_map)


def read_records(
    path: str | Path, fmt: str = "auto", field_map: Mapping[str, str] | None = None
) -> list[QARecord]:
    """Read and validate a local dataset file; the first problem raises a DataError."""
    result = scan_file(path, fmt, field_map)
    result.raise_first()
    return result.records


def write_records(path: str | Path, records: list[QARecord]) -> int:
    """Write canonical JSONL atomically."""
    return write_jsonl(path, (r.to_dict() for r in records))
