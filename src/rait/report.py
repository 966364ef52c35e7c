"""``rait report RUN_DIR``: a run's results as one self-contained HTML page and as Markdown.

What it shows (everything read from the run directory that ``rait run`` / ``rait demo`` wrote):

* **the results table**: Pc, Pw, Pr, THS and the refusal precision per test set (×100), each
  with its paired-bootstrap interval, and AP, ECE; the papers' printed rows with
  ``--reference``; every row against Init-Refuse and Cor-RAIT on the same questions (ΔTHS, its
  interval and p-value; ``--against``);
* **the knowledge quadrants**: per row, its answers split by whether Init-Basic knew the
  question and by the row's verdict (good refusals, over-refusals, hallucinations kept);
* **the Pc–Pw plane** per test set: the base model (Init-Basic) and every row with its
  intervals as error bars, with the THS
  iso-lines. THS = (Pc·Pw0 − Pw·Pc0) / Pw0 is constant on the lines Pc = THS + Pw·Pc0/Pw0,
  parallel to the line from the origin through the base model (THS = 0); up and to the left
  is better;
* **the knowledge map** of the training questions: µ against Δµ (CRaFT's knowledge flow, when
  the run rehearsed) or against σ, one panel per method, each question coloured by what the
  method did with it: kept with its answer, turned into a refusal, or left out;
* **the representation map** (CRaFT Figure 3): a t-SNE of the base model's question
  representations (``RUN/representations``), one panel per method, each training question
  coloured by whether the method kept its answer (vanilla) or turned it into a refusal (IdK),
  with the method's CRSS: the share of IdK questions whose nearest vanilla question has cosine
  similarity above τ_sim = 0.97 (conflicting supervision);
* **reliability diagrams** per test set: accuracy against confidence in each confidence bin,
  one line per row (the diagonal is perfect calibration; ECE in the table);
* **answers that turned into refusals**: on the first in-domain test set, questions the base
  model (Init-Refuse) got wrong and a trained model now refuses (the refusal helps), and those
  it got right and a trained model now refuses (over-refusal).

The HTML embeds its figures (PNG, base64) and needs no network; the Markdown links the same PNG
files, written next to it in ``RUN/report/``.
"""

from __future__ import annotations

import base64
import html
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rait.artifacts import METRICS_FILE, PREDICTIONS_FILE, RunLayout
from rait.cliargs import option
from rait.errors import ConfigError, DataError, Location
from rait.fileio import atomic_open, read_jsonl_rows
from rait.metrics import crss
from rait.references import check_reference_names, rows_beside
from rait.representations import load_representations
from rait.results import (
    DEFAULT_AGAINST,
    by_against,
    cell,
    interval_note,
    paired_comparisons,
    paired_rows,
    reference_note,
    table_columns,
)
from rait.uncertainty import BootstrapConfig

QUADRANT_STYLE = {  # (label, colour): knowledge of the base model → the method's verdict
    "known_correct": ("known → correct", "#2b8a3e"),
    "known_wrong": ("known → wrong", "#ffa94d"),
    "known_refused": ("known → refused (over-refusal)", "#fab005"),
    "unknown_refused": ("unknown → refused (good refusal)", "#4dabf7"),
    "unknown_wrong": ("unknown → wrong (hallucination)", "#e03131"),
    "unknown_correct": ("unknown → correct", "#8ce99a"),
}
KIND_COLOURS = {"van": "#2b8a3e", "idk": "#e8590c", "dropped": "#ced4da"}
KIND_LABELS = {"van": "kept (answer)", "idk": "refusal", "dropped": "left out"}


@dataclass
class ReportConfig:
    """``run_dir``: a run directory with ``results.json``; ``out``: the report folder
    (default ``RUN/report``); ``n_examples``: changed answers shown per kind; ``tau_sim``:
    CRSS's similarity threshold; ``tsne_points``: the most questions the t-SNE embeds (a
    seeded sample; CRSS always counts every question)."""

    run_dir: str = option("runs/demo", help="a run directory (rait run / rait demo)")
    out: str | None = option(None, help="the report folder (default RUN_DIR/report)")
    n_examples: int = option(6, help="changed answers shown per kind")
    seed: int = 0
    tau_sim: float = option(0.97, help="CRSS similarity threshold")
    tsne_points: int = option(2000, help="the most questions the t-SNE embeds, a seeded sample")
    against: list[str] = option(
        default_factory=lambda: list(DEFAULT_AGAINST),
        help="paired comparisons of every row against these methods, where the run has them",
    )
    reference: list[str] = option(
        default_factory=list, help="the papers' printed rows beside the run's (rait.references)"
    )
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)

    def validate(self) -> None:
        self.bootstrap.validate()
        check_reference_names(self.reference, "report")
        if self.n_examples < 0:
            raise ConfigError(f"report: n_examples must be >= 0, got {self.n_examples}")
        if not -1 <= self.tau_sim <= 1:
            raise ConfigError(f"report: tau_sim must be in [-1, 1], got {self.tau_sim}")
        if self.tsne_points < 5:
            raise ConfigError(f"report: tsne_points must be >= 5, got {self.tsne_points}")


# --------------------------------------------------------------------------- reading the run
def load_run(run_dir: Path) -> dict[str, Any]:
    """results.json and every row's metrics, validated; a clear error when it is not a run."""
    results_path = RunLayout(run_dir).results_json
    if not results_path.is_file():
        raise ConfigError(
            f"{run_dir} has no results.json: give the folder `rait run` or `rait demo` wrote"
        )
    try:
        results = json.loads(results_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(
            f"not valid JSON ({exc.msg})", Location(str(results_path), exc.lineno)
        ) from None
    rows = results.get("rows") if isinstance(results, dict) else None
    if not isinstance(rows, list) or not rows:
        raise DataError("no rows", Location(str(results_path), field="rows"))
    metrics = []
    for i, row in enumerate(rows):
        source = row.get("source") if isinstance(row, dict) else None
        if not source:
            raise DataError("missing", Location(str(results_path), field=f"rows[{i}].source"))
        path = Path(source)
        if not path.is_file():  # a run directory that moved: its own eval folder
            path = RunLayout(run_dir).metrics(str(row.get("test_set")), str(row.get("method")))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(
                f"cannot read the metrics file {source}: {exc}",
                Location(str(results_path), field=f"rows[{i}].source"),
            ) from None
        data["_dir"] = path.parent
        metrics.append(data)
    return {"results": results, "metrics": metrics}


def _predictions(folder: Path) -> dict[str, dict]:
    path = folder / PREDICTIONS_FILE
    if not path.is_file():
        return {}
    return {str(r["id"]): r for r in read_jsonl_rows(path, ("id", "verdict"))}


def methods_of(metrics: list[dict]) -> list[str]:
    out: list[str] = []
    for m in metrics:
        if m["method"] not in out:
            out.append(m["method"])
    return out


# --------------------------------------------------------------------------- figures
def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panels(metrics: list[dict], height: float):
    """One panel per test set, and a colour per row (the same in every figure)."""
    plt = _figure()
    tests = table_columns(metrics)
    fig, axes = plt.subplots(1, len(tests), figsize=(5.2 * len(tests), height), squeeze=False)
    cmap, methods = plt.get_cmap("tab20"), methods_of(metrics)
    return fig, list(zip(axes[0], tests, strict=True)), lambda m: cmap(methods.index(m) % 20)


def _method_grid(methods: list[str], height: float):
    """One panel per method, at most 4 a row (spare panels hidden); the axes in order."""
    plt = _figure()
    cols = min(4, len(methods))
    rows = -(-len(methods) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, height * rows), squeeze=False)
    for ax in list(axes.flat)[len(methods) :]:
        ax.axis("off")
    return fig, list(axes.flat)[: len(methods)]


def _kind_legend(fig) -> float:
    """The kept / refusal / left-out legend under the panels; returns the space it takes."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", ls="", color=KIND_COLOURS[k], label=KIND_LABELS[k])
        for k in ("van", "idk", "dropped")
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    return 0.35 / fig.get_figheight()


def _save(fig, path: Path, dpi: int = 110, bottom: float = 0.0) -> Path:
    plt = _figure()
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_pc_pw_plane(metrics: list[dict], path: Path) -> Path:
    """One panel per test set: every row's (Pw, Pc), the base model and the THS iso-lines."""
    fig, panels, colour_of = _panels(metrics, 4.8)
    for ax, (test, role) in panels:
        rows = [m for m in metrics if m["test_set"] == test]
        # the iso-lines of the base model, when every row has the same one (several runs of
        # `rait compare` may have different base models: their stars, no lines)
        bases = {
            ((m.get("baseline") or {}).get("pc0"), (m.get("baseline") or {}).get("pw0"))
            for m in rows
        } - {(None, None)}
        pc0, pw0 = next(iter(bases)) if len(bases) == 1 else (None, None)
        ax.plot([0, 1], [1, 0], color="#868e96", lw=0.8, ls=":")  # Pc + Pw = 1 (no refusal)
        if pc0 is not None and pw0:
            for level in (-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5):
                xs = [0.0, 1.0]
                ys = [level + x * pc0 / pw0 for x in xs]
                ax.plot(xs, ys, color="#adb5bd" if level else "#495057", lw=0.6 if level else 1.0)
                x_label = 0.97
                y_label = level + x_label * pc0 / pw0
                if 0.02 < y_label < 0.98:
                    ax.text(x_label, y_label, f"{100 * level:+.0f}", fontsize=7, color="#868e96")
        for m in rows:
            colour = colour_of(m["method"])
            star = m.get("base_method", m["method"]) == "init-basic"
            ci = m.get("ci") or {}
            if ci.get("pc") and ci.get("pw"):  # the intervals of Pw and Pc
                ax.errorbar(
                    m["pw"],
                    m["pc"],
                    xerr=[[m["pw"] - ci["pw"]["low"]], [ci["pw"]["high"] - m["pw"]]],
                    yerr=[[m["pc"] - ci["pc"]["low"]], [ci["pc"]["high"] - m["pc"]]],
                    fmt="none",
                    ecolor=colour,
                    elinewidth=0.8,
                    alpha=0.6,
                    zorder=2,
                )
            ax.scatter(
                m["pw"],
                m["pc"],
                s=110 if star else 36,
                marker="*" if star else "o",
                color=colour,
                edgecolor="#212529",
                linewidth=0.4,
                zorder=3,
                label=m["method"],
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("Pw (wrong answers)")
        ax.set_ylabel("Pc (correct answers)")
        lines = ": THS iso-lines ×100" if pc0 is not None and pw0 else " (several base models)"
        ax.set_title(f"{test} ({role.upper()}){lines}")
        ax.grid(alpha=0.2)
    panels[-1][0].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _save(fig, path)


def plot_reliability(metrics: list[dict], path: Path) -> Path:
    """Reliability diagrams: accuracy against mean confidence per bin, one line per row."""
    fig, panels, colour_of = _panels(metrics, 4.6)
    for ax, (test, role) in panels:
        ax.plot([0, 1], [0, 1], color="#495057", lw=0.8, ls="--")
        for m in metrics:
            if m["test_set"] != test:
                continue
            bins = [b for b in m.get("reliability") or [] if b.get("count")]
            if not bins:
                continue
            ax.plot(
                [b["mean_confidence"] for b in bins],
                [b["accuracy"] for b in bins],
                marker="o",
                ms=3,
                lw=1,
                color=colour_of(m["method"]),
                label=m["method"],
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy of the answers")
        ax.set_title(f"{test} ({role.upper()})")
        ax.grid(alpha=0.2)
    panels[-1][0].legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def plot_quadrants(metrics: list[dict], path: Path) -> Path | None:
    """One panel per test set, a stacked bar per row: the share of questions in each knowledge
    quadrant (:func:`rait.metrics.knowledge_quadrants`), the refusal precision beside it."""
    rows = [m for m in metrics if m.get("quadrants")]
    if not rows:
        return None
    plt = _figure()
    tests = table_columns(rows)
    methods = methods_of(rows)
    fig, axes = plt.subplots(
        1, len(tests), figsize=(6.0 * len(tests), 0.42 * len(methods) + 1.6), squeeze=False
    )
    for ax, (test, role) in zip(axes[0], tests, strict=True):
        by = {m["method"]: m for m in rows if m["test_set"] == test}
        for y, method in enumerate(methods):
            m = by.get(method)
            if m is None:
                continue
            q, left = m["quadrants"], 0.0
            total = sum(q[key] for key in QUADRANT_STYLE)
            for key, (_label, colour) in QUADRANT_STYLE.items():
                ax.barh(y, q[key] / total, left=left, color=colour)
                left += q[key] / total
            precision, recall = q.get("refusal_precision"), q.get("refusal_recall")
            if precision is not None:
                text = f"P {100 * precision:.0f}%"
                text += f" R {100 * recall:.0f}%" if recall is not None else ""
                ax.text(1.01, y, text, va="center", fontsize=7)
        ax.set_yticks(range(len(methods)), methods, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of the test questions (right: refusal precision, recall)", fontsize=8)
        ax.set_title(f"{test} ({role.upper()}): known / unknown to Init-Basic", fontsize=9)
    from matplotlib.patches import Patch

    handles = [Patch(color=colour, label=label) for label, colour in QUADRANT_STYLE.values()]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7, frameon=False)
    return _save(fig, path, bottom=0.55 / fig.get_figheight())


def knowledge_map(run_dir: Path, methods: list[str]) -> dict[str, Any] | None:
    """The probed questions' µ and Δµ (or σ), and per method what it did with each."""
    knowledge_path = RunLayout(run_dir).knowledge
    if not knowledge_path.is_file():
        return None
    knowledge = {str(r["id"]): r for r in read_jsonl_rows(knowledge_path, ("id", "mu", "sigma"))}
    after_path = RunLayout(run_dir).knowledge_after
    after = (
        {str(r["id"]): r["mu"] for r in read_jsonl_rows(after_path, ("id", "mu"))}
        if after_path.is_file()
        else None
    )
    return {"knowledge": knowledge, "after": after, "kinds": built_kinds(run_dir, methods)}


def built_kinds(run_dir: Path, methods: list[str]) -> dict[str, dict[str, str]]:
    """Per method with a built set in ``RUN/build``: question id → van or idk."""
    kinds: dict[str, dict[str, str]] = {}
    for method in methods:
        built = RunLayout(run_dir).built(method)
        if built.is_file():
            rows = read_jsonl_rows(built, ("id", "kind"))
            for row in rows:
                if row["kind"] not in ("van", "idk"):
                    raise DataError(
                        f"kind must be 'van' or 'idk', got {row['kind']!r}",
                        Location(str(built), row["_line"], field="kind"),
                    )
            kinds[method] = {str(r["id"]): r["kind"] for r in rows}
    return kinds


def plot_knowledge_map(data: dict[str, Any], path: Path) -> Path | None:
    """One panel per method: µ against Δµ (or σ), each question coloured by its fate."""
    if not data["kinds"]:
        return None
    knowledge, after = data["knowledge"], data["after"]
    ids = sorted(knowledge)
    xs = [knowledge[i]["mu"] for i in ids]
    if after is not None:
        ys = [after.get(i, knowledge[i]["mu"]) - knowledge[i]["mu"] for i in ids]
        y_label = "Δµ (after rehearsal − before)"
    else:
        ys = [knowledge[i]["sigma"] for i in ids]
        y_label = "σ (certainty)"
    methods = list(data["kinds"])
    fig, axes = _method_grid(methods, 3.2)
    rng = random.Random(0)
    jitter = [(rng.uniform(-0.012, 0.012), rng.uniform(-0.012, 0.012)) for _ in ids]
    for ax, method in zip(axes, methods, strict=True):
        kind_of = data["kinds"][method]
        for kind in ("dropped", "van", "idk"):
            pts = [
                (x + jx, y + jy)
                for i, x, y, (jx, jy) in zip(ids, xs, ys, jitter, strict=True)
                if kind_of.get(i, "dropped") == kind
            ]
            if pts:
                ax.scatter(
                    *zip(*pts, strict=True), s=8, color=KIND_COLOURS[kind], label=KIND_LABELS[kind]
                )
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("µ (correctness)", fontsize=8)
        ax.set_ylabel(y_label, fontsize=8)
        ax.tick_params(labelsize=7)
    return _save(fig, path, dpi=100, bottom=_kind_legend(fig))


def representation_map(
    run_dir: Path, methods: list[str], tau_sim: float, max_points: int, seed: int = 0
) -> dict[str, Any] | None:
    """The t-SNE embedding of the base model's question representations (CRaFT Figure 3) and
    each method's CRSS (:func:`rait.metrics.crss`) over its vanilla and IdK questions; None when
    the run kept no representations or no method has both kinds."""
    import numpy as np
    from sklearn.manifold import TSNE

    loaded = load_representations(RunLayout(run_dir).representations)
    if loaded is None:
        return None
    ids, reps = loaded
    row_of = {qid: row for row, qid in enumerate(ids)}
    per_method: dict[str, dict[str, Any]] = {}
    for method, kind_of in built_kinds(run_dir, methods).items():
        van = [row_of[i] for i, k in kind_of.items() if k == "van" and i in row_of]
        idk = [row_of[i] for i, k in kind_of.items() if k == "idk" and i in row_of]
        if van and idk:
            per_method[method] = {
                "kinds": kind_of,
                "crss": crss(reps[idk], reps[van], tau_sim),
                "n_van": len(van),
                "n_idk": len(idk),
            }
    if not per_method or len(ids) < 5:
        return None
    rows = np.arange(len(ids))
    if len(rows) > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_points, replace=False))
    unit = reps[rows] / np.maximum(np.linalg.norm(reps[rows], axis=1, keepdims=True), 1e-12)
    # on unit vectors Euclidean distance is monotone in cosine similarity, CRSS's measure
    embedding = TSNE(
        n_components=2,
        perplexity=min(30.0, (len(rows) - 1) / 3),
        init="pca",
        random_state=seed,
    ).fit_transform(unit.astype(np.float64))
    return {
        "ids": [ids[r] for r in rows],
        "xy": embedding,
        "methods": per_method,
        "tau_sim": tau_sim,
        "n_questions": len(ids),
    }


def plot_representation_map(data: dict[str, Any], path: Path) -> Path:
    """One t-SNE panel per method: vanilla and IdK questions, the method's CRSS in the title."""
    methods = list(data["methods"])
    fig, axes = _method_grid(methods, 3.4)
    for ax, method in zip(axes, methods, strict=True):
        info = data["methods"][method]
        for kind in ("dropped", "van", "idk"):
            pts = [
                (x, y)
                for qid, (x, y) in zip(data["ids"], data["xy"], strict=True)
                if info["kinds"].get(qid, "dropped") == kind
            ]
            if pts:
                ax.scatter(*zip(*pts, strict=True), s=7, color=KIND_COLOURS[kind], alpha=0.8)
        ax.set_title(f"{method}  CRSS {100 * info['crss']:.1f}%", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path, dpi=100, bottom=_kind_legend(fig))


# --------------------------------------------------------------------------- examples
def changed_answers(metrics: list[dict], n_examples: int, seed: int = 0) -> dict[str, Any] | None:
    """Answers of the first in-domain test set that turned into refusals after training:
    ``wrong`` (the base model, Init-Refuse, was wrong) and ``correct`` (it was right)."""
    tests = table_columns(metrics)
    if not tests:
        return None
    test = tests[0][0]
    rows = {m["method"]: m for m in metrics if m["test_set"] == test}
    base_row = rows.get("init-refuse") or rows.get("init-basic")
    trained = [m for name, m in rows.items() if name not in ("init-basic", "init-refuse")]
    if base_row is None or not trained:
        return None
    base = _predictions(base_row["_dir"])
    changes: dict[str, list[dict]] = {"wrong": [], "correct": []}
    for m in trained:
        for key, row in _predictions(m["_dir"]).items():
            before = base.get(key)
            if before and row["verdict"] == "refused" and before["verdict"] in changes:
                changes[before["verdict"]].append(
                    {
                        "id": key,
                        "method": m["method"],
                        "before": before.get("answer", ""),
                        "after": row.get("answer", ""),
                        "gold": (before.get("gold") or [""])[0],
                    }
                )
    rng = random.Random(seed)
    shown: dict[str, list[dict]] = {}
    for verdict, found in changes.items():
        by_question: dict[str, dict] = {}
        for change in found:  # one example per question, with every method that refuses it
            entry = by_question.setdefault(change["id"], {**change, "methods": []})
            entry["methods"].append(change["method"])
        picked = rng.sample(sorted(by_question), min(n_examples, len(by_question)))
        shown[verdict] = [by_question[key] for key in picked]
    return {
        "test_set": test,
        "base": base_row["method"],
        "methods": [m["method"] for m in trained],
        "counts": {k: len(v) for k, v in changes.items()},
        "questions": {k: len({c["id"] for c in v}) for k, v in changes.items()},
        "examples": shown,
    }


def _example_line(ex: dict) -> str:
    before = ex["before"] if len(ex["before"]) <= 50 else ex["before"][:49] + "…"
    methods = ", ".join(ex["methods"])
    return f"{ex['id']}: base {before!r} → {ex['after']!r} ({methods}); gold {ex['gold']!r}"


def format_changed_answers(changed: dict[str, Any] | None) -> str:
    """The changed answers as plain text (``rait demo`` prints it)."""
    if not changed:
        return ""
    lines = []
    for verdict, label in (("wrong", "wrong → refused"), ("correct", "correct → refused")):
        lines.append(
            f"{changed['test_set']}, {label}: {changed['counts'][verdict]} answers of "
            f"{len(changed['methods'])} methods, {changed['questions'][verdict]} questions"
        )
        for ex in changed["examples"][verdict]:
            lines.append("  " + _example_line(ex))
    return "\n".join(lines)


# --------------------------------------------------------------------------- the page
def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def table_rows(metrics: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The results table: one row per method, Pc / Pw / Pr / THS / AP / ECE per test set."""
    tests = table_columns(metrics)
    header = ["method"]
    for test, role in tests:
        header += [f"{test} ({role.upper()}) Pc↑", "Pw↓", "Pr", "THS↑", "Prec.↑", "AP↑", "ECE↓"]
    by_key = {(m["method"], m["test_set"]): m for m in metrics}
    body = []
    for method in methods_of(metrics):
        row = [method]
        for test, _role in tests:
            m = by_key.get((method, test))
            if m is None:
                row += ["–"] * 7
                continue
            row += [cell(m, k) for k in ("pc", "pw", "pr", "ths", "refusal_precision")]
            row += [_pct(m.get(k)) for k in ("ap", "ece")]
        body.append(row)
    return header, body


def report_paired(metrics: list[dict], against: list[str], cfg: BootstrapConfig) -> list[dict]:
    """The paired comparisons against each ``against`` method: the defaults where the run has
    them; a method named by the user that the run lacks is an error."""
    rows = [m | {"_file": str(m["_dir"] / METRICS_FILE)} for m in metrics if "_dir" in m]
    present = {m["method"] for m in rows}
    if list(against) != list(DEFAULT_AGAINST):
        missing = [a for a in against if a not in present]
        if missing:
            raise ConfigError(
                f"report: --against {', '.join(missing)}: not a row of this run (rows: "
                f"{', '.join(sorted(present))})"
            )
    return [c for a in against if a in present for c in paired_comparisons(rows, a, cfg)]


def html_paired_table(comparisons: list[dict]) -> str:
    """One paired comparison table (against one method) as HTML, with its heading and note."""
    header, body, note = paired_rows(comparisons)
    return (
        f"<h3>Paired against {html.escape(comparisons[0]['against'])}</h3>"
        + _html_table(header, body)
        + f"<p class='note'>{html.escape(note)}</p>"
    )


def _markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def _html_table(header: list[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;
margin:2em auto;padding:0 1em;color:#212529}h1{font-size:1.6em}h2{margin-top:1.6em;
border-bottom:1px solid #dee2e6}table{border-collapse:collapse;font-size:.85em}th,td{padding:
.25em .6em;border-bottom:1px solid #e9ecef;text-align:right}th:first-child,td:first-child{
text-align:left}img{max-width:100%}code{background:#f1f3f5;padding:0 .2em}.note{color:#495057;
font-size:.9em}li{margin:.2em 0}"""


def html_page(title: str, body: list[str]) -> str:
    """A self-contained HTML page (inline style, no scripts, nothing loaded)."""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>"
        f"{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )


def html_figure(heading: str, path: Path, caption: str | None = None) -> list[str]:
    """A figure's heading, caption and PNG, embedded as base64."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return [
        f"<h2>{html.escape(heading)}</h2>",
        *([f"<p class='note'>{html.escape(caption)}</p>"] if caption else []),
        f"<img alt='{html.escape(heading)}' src='data:image/png;base64,{data}'>",
    ]


def run_report(cfg: ReportConfig) -> dict[str, str]:
    """Write ``report.html`` and ``report.md`` (with the figures) for a run; returns paths."""
    cfg.validate()
    run_dir = Path(cfg.run_dir)
    loaded = load_run(run_dir)
    metrics, results = loaded["metrics"], loaded["results"]
    out = Path(cfg.out) if cfg.out else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, str, Path]] = [
        (
            "The Pc–Pw plane",
            "Each row's share of correct (Pc) and wrong (Pw) answers; the rest "
            "is refused. The star is the base model (Init-Basic); the lines are THS ×100 "
            "iso-lines, the dark one THS = 0.",
            plot_pc_pw_plane(metrics, out / "pc_pw_plane.png"),
        ),
    ]
    kmap = knowledge_map(run_dir, methods_of(metrics))
    if kmap is not None:
        path = plot_knowledge_map(kmap, out / "knowledge_map.png")
        if path is not None:
            axis = "Δµ (the knowledge flow of CRaFT's rehearsal)" if kmap["after"] else "σ"
            figures.append(
                (
                    "The knowledge map of the training set",
                    f"Each probed training question "
                    f"at its µ and {axis}, coloured by what each method did with it.",
                    path,
                )
            )
    rmap = representation_map(run_dir, methods_of(metrics), cfg.tau_sim, cfg.tsne_points, cfg.seed)
    if rmap is not None:
        crss_list = ", ".join(f"{m} {100 * v['crss']:.1f}%" for m, v in rmap["methods"].items())
        figures.append(
            (
                "Question representations (t-SNE) and CRSS",
                f"The base model's last-layer representation of each training question "
                f"(t-SNE of {len(rmap['ids'])} of {rmap['n_questions']}), coloured by what each "
                f"method did with it. CRSS is the share of a method's refusal (IdK) questions "
                f"whose most similar kept (vanilla) question has cosine similarity above "
                f"{rmap['tau_sim']} (CRaFT section 3.2): {crss_list}.",
                plot_representation_map(rmap, out / "representations_tsne.png"),
            )
        )
    quadrants = plot_quadrants(metrics, out / "quadrants.png")
    if quadrants is not None:
        figures.insert(
            1,
            (
                "Knowledge quadrants",
                "Each test question is known (Init-Basic answered it correctly) or unknown; "
                "each bar splits a row's answers by that and by its own verdict. Blue is a "
                "good refusal, yellow an over-refusal, red a hallucination kept. The "
                "numbers are the refusal precision (P: the share of the row's refusals that "
                "fall on unknown questions) and recall (R: the share of unknown questions "
                "refused).",
                quadrants,
            ),
        )
    figures.append(
        (
            "Reliability",
            "Accuracy of the answered questions in each confidence bin; the "
            "dashed diagonal is perfect calibration.",
            plot_reliability(metrics, out / "reliability.png"),
        )
    )
    changed = changed_answers(metrics, cfg.n_examples, cfg.seed)
    paired = report_paired(metrics, cfg.against, cfg.bootstrap)
    refs = rows_beside(cfg.reference, metrics)
    header, body = table_rows(metrics + refs)
    title = results.get("title") or f"rait report: {run_dir}"
    note = " ".join(n for n in (interval_note(metrics), reference_note(refs)) if n)
    md = [
        f"# {title}",
        "",
        f"Run directory: `{run_dir}`",
        "",
        _markdown_table(header, body),
        "",
        note,
        "",
    ]
    page = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>Run directory: <code>{html.escape(str(run_dir))}</code>. "
        "Pc, Pw, Pr, THS, AP and ECE ×100; THS against Init-Basic on the same test set. "
        f"{html.escape(note)}</p>",
        "<h2>Results</h2>",
        _html_table(header, body),
    ]
    for against, group in by_against(paired).items():
        p_header, p_body, p_note = paired_rows(group)
        md += [
            f"### Paired against {against}",
            "",
            _markdown_table(p_header, p_body),
            "",
            p_note,
            "",
        ]
        page.append(html_paired_table(group))
    for heading, caption, path in figures:
        md += [f"## {heading}", "", caption, "", f"![{heading}]({path.name})", ""]
        page += html_figure(heading, path, caption)
    if changed:
        md += ["## Answers that turned into refusals", ""]
        page.append("<h2>Answers that turned into refusals</h2>")
        for verdict, label in (
            ("wrong", "wrong → refused (the refusal helps)"),
            ("correct", "correct → refused (over-refusal)"),
        ):
            count = changed["counts"][verdict]
            intro = (
                f"{changed['test_set']}: {label}, {count} answers of "
                f"{len(changed['methods'])} methods, {changed['questions'][verdict]} questions "
                f"(base: {changed['base']})"
            )
            md += [f"**{intro}**", ""]
            page.append(f"<p><b>{html.escape(intro)}</b></p><ul>")
            for ex in changed["examples"][verdict]:
                line = _example_line(ex)
                md.append(f"- {line}")
                page.append(f"<li>{html.escape(line)}</li>")
            md.append("")
            page.append("</ul>")
    html_path, md_path = out / "report.html", out / "report.md"
    with atomic_open(html_path) as handle:
        handle.write(html_page(title, page))
    with atomic_open(md_path) as handle:
        handle.write("\n".join(md) + "\n")
    return {"html": str(html_path), "markdown": str(md_path)}
