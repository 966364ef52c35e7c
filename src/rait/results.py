"""Results tables in the papers' layout: one row per method, for each test set (in-domain
first, then out-of-domain) the columns Pc↑, Pw↓ and THS↑, ×100 with one decimal.

The table is built from the ``metrics.json`` files that ``rait eval`` writes; runs add rows
by adding evaluations. CLI: ``rait table PATH... [--out results.md]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from rait.artifacts import METRICS_FILE
from rait.errors import DataError, Location
from rait.methods import row_order

_REQUIRED = ("method", "test_set", "role", "pc", "pw", "ths")


def find_metrics(paths: Iterable[str | Path]) -> list[Path]:
    """``metrics.json`` files: the paths themselves, or found under folders (sorted)."""
    found: list[Path] = []
    for path in paths:
        p = Path(path)
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(p.rglob(METRICS_FILE)))
        else:
            raise DataError("no such file or folder", Location(str(p)))
    if not found:
        raise DataError(f"no {METRICS_FILE} found in {', '.join(map(str, paths))}")
    return found


def load_results(files: Sequence[Path]) -> list[dict]:
    """Read and check metrics files; a method evaluated twice on one test set is an error."""
    results, seen = [], {}
    for file in files:
        try:
            data = json.loads(Path(file).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(
                f"not valid JSON ({exc.msg})", Location(str(file), exc.lineno)
            ) from None
        if not isinstance(data, dict):
            raise DataError("expected a JSON object", Location(str(file)))
        for key in _REQUIRED:
            if key not in data:
                raise DataError("missing field", Location(str(file), field=key))
        _check_rates(data, str(file))
        key = (data["method"], data["test_set"])
        if key in seen:
            raise DataError(
                f"method {key[0]!r} on test set {key[1]!r} appears twice (also in {seen[key]})",
                Location(str(file)),
            )
        seen[key] = str(file)
        data["_file"] = str(file)
        results.append(data)
    return results


def _check_rates(data: dict, where: str) -> None:
    """Pc, Pw (and Pr) are finite shares in [0, 1] summing to 1, THS a finite number or null:
    an edited or damaged metrics file is an error, never a table showing Pc 170.0 or nan."""
    import math

    for key in ("method", "test_set"):
        if not isinstance(data[key], str) or not data[key]:
            raise DataError(
                f"expected a non-empty string, got {data[key]!r}", Location(where, field=key)
            )
    if data["role"] not in ("id", "ood"):
        raise DataError(f"expected id or ood, got {data['role']!r}", Location(where, field="role"))
    rates = [k for k in ("pc", "pw", "pr") if k in data]
    for key in [*rates, "ths"]:
        value = data[key]
        if key == "ths" and value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise DataError(f"expected a finite number, got {value!r}", Location(where, field=key))
        if key != "ths" and not 0.0 <= value <= 1.0:
            raise DataError(f"a share must lie in [0, 1], got {value}", Location(where, field=key))
    if len(rates) == 3 and abs(sum(data[k] for k in rates) - 1.0) > 1e-9:
        # counts / n summed: three roundings of at most 2^-53 each, far below 1e-9
        raise DataError(
            f"pc + pw + pr = {sum(data[k] for k in rates)!r}, not 1: the file was edited "
            "or damaged",
            Location(where, field="pc"),
        )


def _method_rank(method: str) -> tuple[int, str]:
    """The papers' row order (:func:`rait.methods.row_order`); unknown names last, by name."""
    order = row_order()
    return (order.index(method) if method in order else len(order), method)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def table_columns(results: Sequence[dict]) -> list[tuple[str, str]]:
    """(test_set, role) pairs: in-domain first, then out-of-domain, each by first appearance."""
    columns: list[tuple[str, str]] = []
    for role in ("id", "ood"):
        for r in results:
            col = (r["test_set"], r["role"])
            if r["role"] == role and col not in columns:
                columns.append(col)
    return columns


def results_table(results: Sequence[dict], title: str | None = None) -> str:
    """The Markdown table (GitHub flavour): Pc↑, Pw↓, THS↑ per test set, ×100, one decimal.

    THS that is undefined (the baseline makes no error) shows as "undef."; a method not
    evaluated on a test set shows "–".
    """
    columns = table_columns(results)
    cells = {(r["method"], r["test_set"]): r for r in results}
    methods = sorted({r["method"] for r in results}, key=_method_rank)
    header = ["Method"]
    for test_set, role in columns:
        label = f"{test_set} ({role.upper()})"
        header += [f"{label} Pc↑", "Pw↓", "THS↑"]
    lines = []
    if title:
        lines += [f"**{title}**", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for method in methods:
        row = [method]
        for test_set, _role in columns:
            r = cells.get((method, test_set))
            if r is None:
                row += ["–", "–", "–"]
                continue
            ths = (
                _pct(r["ths"]) if r["ths"] is not None else ("undef." if r.get("baseline") else "–")
            )
            row += [_pct(r["pc"]), _pct(r["pw"]), ths]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def results_json(results: Sequence[dict]) -> dict:
    """The machine-readable form of the table."""
    keep = ("method", "test_set", "role", "n", "pc", "pw", "pr", "ths", "ap", "ece", "model")
    return {
        "columns": [{"test_set": t, "role": r} for t, r in table_columns(results)],
        "rows": [
            {k: r.get(k) for k in keep} | {"source": r["_file"]}
            for r in sorted(results, key=lambda r: (_method_rank(r["method"]), r["test_set"]))
        ],
    }
