"""Results tables in the papers' layout: one row per method, for each test set (in-domain
first, then out-of-domain) the columns Pc↑, Pw↓, Pr, THS↑ and the refusal precision, ×100 with
one decimal, each with its paired-bootstrap interval (:mod:`rait.uncertainty`).

The table is built from the ``metrics.json`` files that ``rait eval`` writes; runs add rows
by adding evaluations. :func:`paired_comparisons` sets each method against one named method on
the same questions (ΔTHS, its interval and p-value, from the predictions beside each metrics
file); :mod:`rait.references` adds the papers' printed rows.
CLI: ``rait table PATH... [--out results.md] [--against cor-rait] [--reference grait-table2]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from rait.artifacts import METRICS_FILE, PREDICTIONS_FILE
from rait.errors import ConfigError, DataError, Location
from rait.fileio import read_jsonl_rows
from rait.methods import row_order
from rait.uncertainty import BootstrapConfig, format_interval, format_p, paired_difference

#: the rows a RAIT method has to beat, compared against by default where a run has them: the
#: refusal prompt alone, and plain RAIT
DEFAULT_AGAINST = ("init-refuse", "cor-rait")

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
    ci = data.get("ci")
    if ci is not None:
        if not isinstance(ci, dict):
            raise DataError(f"expected an object, got {ci!r}", Location(where, field="ci"))
        for key, interval in ci.items():
            if isinstance(interval, dict):
                low, high = interval.get("low"), interval.get("high")
                ok = all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    for v in (low, high)
                )
                if not ok or low > high:
                    raise DataError(
                        f"an interval needs finite low <= high, got {interval!r}",
                        Location(where, field=f"ci.{key}"),
                    )
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


def _row_order(results: Sequence[dict]) -> list[str]:
    """The table's rows: a run's methods in the papers' order, then reference rows in their
    printed order (``_order``)."""
    tables = list(dict.fromkeys(r["reference"]["name"] for r in results if "_order" in r))
    printed = {
        r["method"]: (tables.index(r["reference"]["name"]), r["_order"])
        for r in results
        if "_order" in r
    }
    return sorted(
        {r["method"] for r in results},
        key=lambda m: (1, *printed[m], m) if m in printed else (0, *_method_rank(m), 0, ""),
    )


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def refusal_precision(r: dict) -> float | None:
    return (r.get("quadrants") or {}).get("refusal_precision")


def cell(r: dict, key: str) -> str:
    """One cell, ×100 with one decimal and the row's interval where it has one."""
    point = refusal_precision(r) if key == "refusal_precision" else r.get(key)
    if key == "ths" and point is None:
        return "undef." if r.get("baseline") else "–"
    text = format_interval(point, (r.get("ci") or {}).get(key))
    check = (r.get("reference") or {}).get("check") or {}
    if key == "ths" and check.get("reproduced") is False:
        text += " †"
    return text


COLUMNS = (
    ("pc", "Pc↑"),
    ("pw", "Pw↓"),
    ("pr", "Pr"),
    ("ths", "THS↑"),
    ("refusal_precision", "Prec.↑"),
)


def table_columns(results: Sequence[dict]) -> list[tuple[str, str]]:
    """(test_set, role) pairs: in-domain first, then out-of-domain, each by first appearance."""
    columns: list[tuple[str, str]] = []
    for role in ("id", "ood"):
        for r in results:
            col = (r["test_set"], r["role"])
            if r["role"] == role and col not in columns:
                columns.append(col)
    return columns


def interval_note(results: Sequence[dict]) -> str | None:
    """The line under a table that says what its brackets are (None without intervals)."""
    ci = next((r["ci"] for r in results if r.get("ci")), None)
    if ci is None:
        return None
    return (
        f"[low, high]: {100 * ci['confidence']:g} % paired-bootstrap interval over the test "
        f"questions (percentile, B = {ci['n_resamples']:,}, seed {ci['seed']}). Prec.: "
        "refusal precision, the share of refusals on questions Init-Basic did not answer "
        "correctly."
    )


def results_table(results: Sequence[dict], title: str | None = None) -> str:
    """The Markdown table (GitHub flavour): Pc↑, Pw↓, Pr, THS↑ and the refusal precision per
    test set, ×100, one decimal, with the intervals of ``metrics.json``.

    THS that is undefined (the baseline makes no error) shows as "undef."; a method not
    evaluated on a test set shows "–", as does the precision of a row without refusals.
    """
    columns = table_columns(results)
    cells = {(r["method"], r["test_set"]): r for r in results}
    methods = _row_order(results)
    header = ["Method"]
    for test_set, role in columns:
        label = f"{test_set} ({role.upper()})"
        header += [f"{label} {COLUMNS[0][1]}"] + [name for _, name in COLUMNS[1:]]
    lines = []
    if title:
        lines += [f"**{title}**", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for method in methods:
        row = [method]
        for test_set, _role in columns:
            r = cells.get((method, test_set))
            row += ["–"] * len(COLUMNS) if r is None else [cell(r, key) for key, _ in COLUMNS]
        lines.append("| " + " | ".join(row) + " |")
    notes = [interval_note(results), reference_note(results)]
    if any(notes):
        lines += ["", *[" ".join(n for n in notes if n)]]
    return "\n".join(lines)


def reference_note(results: Sequence[dict]) -> str | None:
    """What the papers' rows in a table are (None without any)."""
    sources = list(dict.fromkeys(r["reference"]["source"] for r in results if r.get("reference")))
    if not sources:
        return None
    return (
        f"Rows named after a reference: printed in {'; '.join(sources)}; no intervals (the "
        "papers print none), Pr = 1 − Pc − Pw. † a printed THS that its printed Pc and Pw do "
        "not give under any rounding (rait.references)."
    )


# --------------------------------------------------------------------------- paired
def _verdicts(metrics_file: str | Path) -> dict[str, str]:
    path = Path(metrics_file).parent / PREDICTIONS_FILE
    if not path.is_file():
        raise DataError(
            f"no {PREDICTIONS_FILE} beside this metrics file: a paired comparison needs "
            "every answer",
            Location(str(metrics_file)),
        )
    return {str(r["id"]): str(r["verdict"]) for r in read_jsonl_rows(path, ("id", "verdict"))}


def _base_file(results: Sequence[dict], row: dict) -> str:
    """The metrics file of Init-Basic on ``row``'s test set: its row, or the row's baseline."""
    for r in results:
        if r["test_set"] == row["test_set"] and r["method"] == "init-basic":
            return r["_file"]
    source = (row.get("baseline") or {}).get("source")
    if source and (Path(source) / PREDICTIONS_FILE).is_file():
        return str(Path(source) / METRICS_FILE)
    if source and Path(source).name == PREDICTIONS_FILE and Path(source).is_file():
        return str(Path(source).parent / METRICS_FILE)
    raise DataError(
        f"no Init-Basic evaluation of test set {row['test_set']!r} to measure THS against: "
        "add its eval folder",
        Location(row["_file"]),
    )


def paired_comparisons(
    results: Sequence[dict], against: str, cfg: BootstrapConfig | None = None
) -> list[dict]:
    """Every other method against ``against`` on each test set where both were evaluated, on
    the same questions: :func:`rait.uncertainty.paired_difference` (ΔPc, ΔPw, ΔPr, ΔTHS and
    the refusal precision and recall, each with its interval and p-value). THS of both is
    against Init-Basic on that test set, whose verdicts are redrawn with theirs."""
    cfg = cfg or BootstrapConfig()
    if not any(r["method"] == against for r in results):
        known = ", ".join(sorted({r["method"] for r in results}))
        raise ConfigError(f"--against {against!r}: no such row (rows: {known})")
    out = []
    for test_set, role in table_columns(results):
        rows = {r["method"]: r for r in results if r["test_set"] == test_set}
        if against not in rows:
            continue
        other = _verdicts(rows[against]["_file"])
        base = _verdicts(_base_file(results, rows[against]))
        for method in sorted(rows, key=_method_rank):
            if method == against:
                continue
            mine = _verdicts(rows[method]["_file"])
            if set(mine) != set(other) or set(mine) != set(base):
                raise DataError(
                    f"{method} and {against} (and Init-Basic) were not evaluated on the same "
                    f"questions of {test_set!r}: a paired comparison needs the same questions",
                    Location(rows[method]["_file"]),
                )
            ids = sorted(mine)
            diff = paired_difference(
                [mine[i] for i in ids], [other[i] for i in ids], [base[i] for i in ids], cfg
            )
            out.append(
                {"test_set": test_set, "role": role, "method": method, "against": against} | diff
            )
    return out


def paired_rows(comparisons: Sequence[dict]) -> tuple[list[str], list[list[str]], str]:
    """The paired comparisons against one method as (header, rows, note): per test set ΔTHS
    ×100 with its interval (``*`` when it excludes 0), the p-value and ΔPr."""
    from rait.uncertainty import significant

    against = comparisons[0]["against"]
    columns = list(dict.fromkeys((c["test_set"], c["role"]) for c in comparisons))
    methods = list(dict.fromkeys(c["method"] for c in comparisons))
    by = {(c["method"], c["test_set"]): c for c in comparisons}
    header = ["Method"]
    for t, role in columns:
        header += [f"{t} ({role.upper()}) ΔTHS", "p", "ΔPr"]
    body = []
    for method in methods:
        row = [method]
        for t, _role in columns:
            c = by.get((method, t))
            if c is None:
                row += ["–", "–", "–"]
                continue
            d = c["ths"]
            row += [
                format_interval(d["delta"], d["interval"]) + (" *" if significant(d) else ""),
                format_p(d["p_value"]),
                format_interval(c["pr"]["delta"], c["pr"]["interval"]),
            ]
        body.append(row)
    first = comparisons[0]
    note = (
        f"Δ = the row minus {against} on the same questions, ×100, with its "
        f"{100 * first['confidence']:g} % paired-bootstrap interval (B = "
        f"{first['n_resamples']:,}, Init-Basic's verdicts redrawn with both); p: two-sided "
        "bootstrap p-value; * the interval excludes 0 (each comparison on its own: not "
        "corrected for the number of comparisons in the table)."
    )
    return header, body, note


def by_against(comparisons: Sequence[dict]) -> dict[str, list[dict]]:
    """The comparisons grouped by the method they are against, in order of appearance."""
    groups: dict[str, list[dict]] = {}
    for c in comparisons:
        groups.setdefault(c["against"], []).append(c)
    return groups


def paired_table(comparisons: Sequence[dict], title: str | None = None) -> str:
    """:func:`paired_rows` as Markdown, under a title line (empty without comparisons)."""
    if not comparisons:
        return ""
    header, body, note = paired_rows(comparisons)
    lines = [f"**{title or 'Paired against ' + comparisons[0]['against']}**", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join([*lines, "", note])


def results_json(results: Sequence[dict], comparisons: Sequence[dict] | None = None) -> dict:
    """The machine-readable form of the table (and of the paired comparisons)."""
    keep = (
        "method",
        "test_set",
        "role",
        "n",
        "pc",
        "pw",
        "pr",
        "ths",
        "ap",
        "ece",
        "model",
        "ci",
        "quadrants",
    )
    order = _row_order(results)
    rows = sorted(results, key=lambda r: (order.index(r["method"]), r["test_set"]))
    out = {
        "columns": [{"test_set": t, "role": r} for t, r in table_columns(results)],
        "rows": [
            {k: r.get(k) for k in keep}
            | {"source": r["_file"]}
            | ({"reference": r["reference"]} if "reference" in r else {})
            for r in rows
        ],
    }
    if comparisons:
        out["paired"] = list(comparisons)
    return out
