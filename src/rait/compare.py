"""``rait compare RUN_DIR RUN_DIR ...``: several runs side by side (other models, seeds, sizes or
settings), as one table and one Pc–Pw plane; ``--against METHOD`` adds, within each run, every
row against that method on the same questions (ΔTHS with its paired-bootstrap interval and
p-value), ``--reference grait-table2`` the papers' printed rows. One run is enough with either.

Each run's rows keep their own THS: measured against that run's Init-Basic, as in its own
report. The rows are labelled ``RUN · METHOD``, with RUN the folder's name or ``--names``. The
plane shows every run's base model as a star. It draws THS iso-lines only when all runs share
one base model on that test set.

Writes ``compare.md`` (the table), ``compare.html`` (the table and the plane, self-contained)
and ``compare.json`` (the rows, each with its ``run`` and ``method``).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rait.artifacts import METRICS_FILE
from rait.cliargs import option
from rait.errors import ConfigError
from rait.fileio import atomic_open, write_json
from rait.references import check_reference_names, rows_beside
from rait.report import (
    _html_table,
    _markdown_table,
    html_figure,
    html_page,
    html_paired_table,
    load_run,
    plot_pc_pw_plane,
    table_rows,
)
from rait.results import (
    by_against,
    interval_note,
    paired_comparisons,
    paired_table,
    reference_note,
)
from rait.uncertainty import BootstrapConfig

SEPARATOR = " · "


@dataclass
class CompareConfig:
    """``runs``: run directories (``rait run`` / ``rait demo``); ``names``: their labels
    (default: the folders' names); ``out``: the output folder."""

    runs: list[str] = option(help="run directories (rait run / rait demo)")
    names: list[str] | None = option(None, help="a label per run (default: folder names)")
    out: str = option("compare", help="output folder")
    title: str | None = option(None, help="the page's title")
    against: list[str] = option(
        default_factory=list,
        help="also each run's rows against this method of the same run, on the same questions "
        "(ΔTHS, paired-bootstrap interval, p-value)",
    )
    reference: list[str] = option(
        default_factory=list, help="the papers' printed rows beside the runs (rait.references)"
    )
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)

    def labels(self) -> list[str]:
        return list(self.names) if self.names else [Path(r).resolve().name for r in self.runs]

    def validate(self) -> None:
        if not self.runs or (len(self.runs) < 2 and not self.against and not self.reference):
            raise ConfigError(
                "compare: give at least two run directories, or one with --against METHOD or "
                "--reference NAME"
            )
        self.bootstrap.validate()
        check_reference_names(self.reference, "compare")
        if self.names is not None and len(self.names) != len(self.runs):
            raise ConfigError(
                f"compare: {len(self.names)} names for {len(self.runs)} runs: give one per run"
            )
        labels = self.labels()
        if any(not label.strip() for label in labels):
            raise ConfigError("compare: a run name is empty")
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise ConfigError(
                f"compare: two runs are named {', '.join(twice)}: tell them apart with --names"
            )


def compare_metrics(cfg: CompareConfig) -> list[dict[str, Any]]:
    """Every run's rows, each labelled ``RUN · METHOD`` (``run`` and ``base_method`` keep the
    parts)."""
    cfg.validate()
    rows = []
    for run, label in zip(cfg.runs, cfg.labels(), strict=True):
        for m in load_run(Path(run))["metrics"]:
            rows.append(
                {**m, "method": f"{label}{SEPARATOR}{m['method']}", "run": label}
                | {"base_method": m["method"]}
            )
    return rows


def compare_paired(cfg: CompareConfig) -> list[dict[str, Any]]:
    """Within each run, every row against each ``against`` method of that run (labels
    ``RUN · METHOD``); a run without that method is skipped."""
    out = []
    for run, label in zip(cfg.runs, cfg.labels(), strict=True):
        metrics = [
            m | {"_file": str(m["_dir"] / METRICS_FILE)} for m in load_run(Path(run))["metrics"]
        ]
        for against in cfg.against:
            if not any(m["method"] == against for m in metrics):
                continue
            for c in paired_comparisons(metrics, against, cfg.bootstrap):
                out.append(
                    c
                    | {
                        "method": f"{label}{SEPARATOR}{c['method']}",
                        "against": f"{label}{SEPARATOR}{against}",
                        "run": label,
                    }
                )
    if cfg.against and not out:
        raise ConfigError(
            f"compare: no run has a row {' or '.join(map(repr, cfg.against))} to compare against"
        )
    return out


def run_compare(cfg: CompareConfig) -> dict[str, str]:
    """Write compare.md, compare.html and compare.json; returns their paths."""
    metrics = compare_metrics(cfg)
    paired = compare_paired(cfg)
    references = rows_beside(cfg.reference, metrics)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    title = cfg.title or "rait compare: " + ", ".join(cfg.labels())
    header, body = table_rows(metrics + references)
    # the plane holds the runs only: a paper's rows have another base model and no run
    plane = plot_pc_pw_plane(metrics, out / "pc_pw_plane.png")
    pairs = list(zip(cfg.labels(), cfg.runs, strict=True))
    runs = ", ".join(f"{label} = {run}" for label, run in pairs)
    notes = [interval_note(metrics), reference_note(references)]
    note = " ".join(
        [
            f"Runs: {runs}. Pc, Pw, Pr, THS, AP and ECE ×100; each row's THS is against its "
            "own run's Init-Basic.",
            *[n for n in notes if n],
        ]
    )
    with atomic_open(out / "compare.md") as handle:
        handle.write(
            "\n".join(
                [
                    f"# {title}",
                    "",
                    note,
                    "",
                    _markdown_table(header, body),
                    "",
                    *[paired_table(group) + "\n" for group in by_against(paired).values()],
                    "## The Pc–Pw plane",
                    "",
                    f"![The Pc–Pw plane]({plane.name})",
                    "",
                ]
            )
        )
    page = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>{html.escape(note)}</p>",
        _html_table(header, body),
        *[html_paired_table(group) for group in by_against(paired).values()],
        *html_figure("The Pc–Pw plane", plane),
    ]
    with atomic_open(out / "compare.html") as handle:
        handle.write(html_page(title, page))
    keep = ("test_set", "role", "n", "pc", "pw", "pr", "ths", "ap", "ece", "model", "adapter")
    write_json(
        out / "compare.json",
        {
            "title": title,
            "runs": [{"name": n, "run_dir": r} for n, r in pairs],
            "rows": [
                {"run": m["run"], "method": m["base_method"]} | {k: m.get(k) for k in keep}
                for m in metrics
            ],
            "references": [
                {k: r.get(k) for k in ("test_set", "role", "pc", "pw", "pr", "ths", "reference")}
                for r in references
            ],
            "paired": paired,
        },
    )
    return {
        "markdown": str(out / "compare.md"),
        "html": str(out / "compare.html"),
        "json": str(out / "compare.json"),
    }
