"""The papers' published rows, as data: GRAIT Table 2 and CRaFT Table 2 (LLaMA2-7B-Chat and
LLaMA3-8B-Instruct; MMLU / ARC-c and TriviaQA / NQ; Pc, Pw, THS in percent, as printed).

``rait table RUN --reference grait-table2`` (and ``rait compare``, ``rait report``) puts them
beside a run of the matching setup (``configs/mmlu-llama3-8b.yaml``: test sets ``mmlu-val``
and ``arc-challenge``; ``configs/triviaqa-llama3-8b.yaml``: ``triviaqa-dev`` and
``nq-open-dev``). The files are ``rait/references/NAME.json``; each row keeps the printed
label of its method.

**Checked against the metric.** Every printed THS is recomputed with
:func:`rait.metrics.ths` from the printed Pc and Pw of the row and of Init-Basic on the same
model and test set. Printed rates are rounded to 0.1, so the recomputed THS is a range
(:func:`rait.metrics.ths_rounding_range`), and the printed THS, itself rounded, must lie within
0.05 of it. A row that cannot be reproduced by any rounding carries ``misprint``: what the
printed rates give instead. Those rows are shown as printed and flagged, never corrected.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from rait.errors import ConfigError, DataError, Location
from rait.metrics import MetricError, ths, ths_rounding_range

#: printed rates are percentages with one decimal: a step of 0.001 as a fraction
ROUNDING = 0.001
_ROW_FIELDS = ("model", "setup", "method", "printed_method", "test_set", "role", "pc", "pw", "ths")


def reference_names() -> list[str]:
    """The reference tables shipped with rait."""
    folder = resources.files(__name__)
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def check_reference_names(names: list[str], where: str = "") -> None:
    """A clear error for a name that is not a shipped table (``where``: the command)."""
    known = reference_names()
    for name in names:
        if name not in known:
            prefix = f"{where}: " if where else ""
            raise ConfigError(
                f"{prefix}no reference table {name!r}; the tables are: {', '.join(known)}"
            )


@cache
def load_reference(name: str) -> dict[str, Any]:
    """One reference table, validated; its rows' rates as fractions (``pc``, ``pw``, ``pr``,
    ``ths``), with ``check`` (see :func:`check_row`) on each."""
    check_reference_names([name])
    where = f"rait/references/{name}.json"
    data = json.loads(resources.files(__name__).joinpath(f"{name}.json").read_text("utf-8"))
    rows = []
    for i, raw in enumerate(data["rows"]):
        for key in _ROW_FIELDS:
            if key not in raw:
                raise DataError("missing", Location(where, field=f"rows[{i}].{key}"))
        row = dict(raw)
        for key in ("pc", "pw", "ths"):
            if row[key] is not None:
                row[key] = row[key] / 100
        known = row["pc"] is not None and row["pw"] is not None
        # Pr is not printed: 1 − Pc − Pw, unless the printed pair sums past 1
        row["pr"] = max(1 - row["pc"] - row["pw"], 0.0) if known else None
        rows.append(row)
    for row in rows:
        row["check"] = check_row(row, rows)
    return data | {"rows": rows}


def _base_of(row: dict, rows: list[dict]) -> dict | None:
    for r in rows:
        if (r["model"], r["test_set"], r["method"]) == (
            row["model"],
            row["test_set"],
            "init-basic",
        ):
            return r
    return None


def check_row(row: dict, rows: list[dict]) -> dict[str, Any]:
    """Recompute a printed THS: ``{"recomputed", "low", "high", "reproduced", "why"}``.

    ``reproduced`` when the printed THS lies within half a printed step (0.0005) of the range
    THS takes over every unrounded Pc, Pw, Pc0, Pw0 that round to the printed ones."""
    base = _base_of(row, rows)
    if base is None or None in (row["pc"], row["pw"], row["ths"], base["pc"], base["pw"]):
        return {"recomputed": None, "reproduced": None, "why": "a rate is not printed"}
    args = (row["pc"], row["pw"], base["pc"], base["pw"])
    try:
        value = ths(*args, rounding=ROUNDING)
        low, high = ths_rounding_range(*args, ROUNDING)
    except MetricError as exc:
        return {"recomputed": None, "reproduced": False, "why": str(exc)}
    half = ROUNDING / 2 + 1e-12
    ok = low - half <= row["ths"] <= high + half
    why = (
        None
        if ok
        else f"printed {100 * row['ths']:.2f}; its Pc, Pw give {100 * value:.2f} "
        f"(any rounding: {100 * low:.2f} to {100 * high:.2f})"
    )
    return {"recomputed": value, "low": low, "high": high, "reproduced": ok, "why": why}


_MODEL_IDS = {
    "LLaMA3-8B-Instruct": ("meta-llama/meta-llama-3-8b-instruct", "llama-3-8b-instruct"),
    "LLaMA2-7B-Chat": ("meta-llama/llama-2-7b-chat-hf", "llama-2-7b-chat"),
}


def paper_model(model_name: str | None) -> str | None:
    """The paper's model label of a hub id or local folder name (None when it is another)."""
    name = (model_name or "").lower().rstrip("/")
    for label, ids in _MODEL_IDS.items():
        if any(name == i or name.endswith("/" + i.split("/")[-1]) for i in ids):
            return label
    return None


def reference_rows(
    name: str, test_sets: list[str] | None = None, model: str | None = None
) -> list[dict[str, Any]]:
    """The reference's rows as result rows (the shape of ``metrics.json``) labelled
    ``NAME · MODEL · method``: only the test sets given (all by default) and only the paper
    model matching ``model`` (a hub id or folder name; every model when none matches)."""
    ref = load_reference(name)
    label = paper_model(model)
    rows = []
    for order, r in enumerate(ref["rows"]):
        if test_sets is not None and r["test_set"] not in test_sets:
            continue
        if label is not None and r["model"] != label:
            continue
        rows.append(
            {
                "method": f"{name} · {r['model']} · {r['method']}",
                "test_set": r["test_set"],
                "role": r["role"],
                "n": None,
                "pc": r["pc"],
                "pw": r["pw"],
                "pr": r["pr"],
                "ths": r["ths"],
                "baseline": {"source": ref["source"]},
                "reference": {"name": name, "source": ref["source"], "check": r["check"]}
                | {k: r[k] for k in ("model", "printed_method", "method")},
                "_file": f"rait/references/{name}.json",
                "_order": order,
            }
        )
    if test_sets is not None and not rows:
        have = sorted({r["test_set"] for r in ref["rows"]})
        raise ConfigError(
            f"the reference {name!r} has none of the test sets {', '.join(test_sets)}; it has "
            f"{', '.join(have)} (the setups of configs/mmlu-llama3-8b.yaml and "
            "configs/triviaqa-llama3-8b.yaml)"
        )
    return rows


def rows_beside(names: list[str], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of each reference in ``names`` that sit beside ``results``: their test sets
    (every test set when there are no results) and their model (:func:`reference_rows`)."""
    tests = list(dict.fromkeys(r["test_set"] for r in results)) or None
    model = next((r.get("model") for r in results if r.get("model")), None)
    return [row for name in names for row in reference_rows(name, tests, model)]
