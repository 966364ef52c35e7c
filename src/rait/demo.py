"""``rait demo``: the README's main job on the offline default.

Today it builds the world-facts set, probes the offline default model's (SmolLM2-135M-Instruct)
knowledge of a sample of the training questions (µ, σ), and evaluates the base model's two
baselines on samples of the in-domain and out-of-domain test sets: Init-Basic (basic prompt)
and Init-Refuse (the REFUSE prompt, which invites "I don't know"). It prints the knowledge map,
the results table (Pc, Pw, THS) and example answers. Later stages (build, train, report) extend
it into the full pipeline.

Stages (each cached and resumable in the run directory):

* ``data``: ``rait data world-facts`` into ``RUN/data``;
* ``probe``: the knowledge probe (µ, σ; METHODS.md section 2) of a sample of the training
  questions, 3-shot from the dev split, 10 samples each, in ``RUN/probe``;
* ``eval/{test set}/{method}``: ``rait eval`` (METHODS.md section 7) of Init-Basic and
  Init-Refuse; ``RUN/results.md`` and ``RUN/results.json`` hold the table.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from rait.config import config_to_dict
from rait.data.sources import DataSource
from rait.data.world_facts import WorldFactsConfig, write_world_facts
from rait.errors import ConfigError
from rait.evaluate import PREDICTIONS_FILE, EvalConfig, run_eval
from rait.fileio import atomic_open, write_json
from rait.matching import MATCH_MODES
from rait.models import ModelConfig
from rait.probe import KNOWLEDGE_FILE, ProbeConfig, run_probe
from rait.results import results_json, results_table
from rait.rundir import RunDir

TEST_SETS = (("id_test", "id"), ("ood_test", "ood"))
BASELINES = ("init-basic", "init-refuse")


@dataclass
class DemoConfig:
    """The demo's settings (all overridable with ``--set key=value``).

    ``n_questions``: questions drawn from each test set (ID and OOD); ``probe_questions``:
    training questions probed (0 skips the probe).
    """

    run_dir: str = "runs/demo"
    model: ModelConfig = field(default_factory=ModelConfig)
    world_facts: WorldFactsConfig = field(default_factory=WorldFactsConfig)
    n_questions: int = 80
    seed: int = 0
    batch_size: int = 16
    max_new_tokens: int = 24
    match: str = "contains"
    n_examples: int = 6
    probe_questions: int = 48
    n_samples: int = 10

    def validate(self) -> None:
        if self.n_questions <= 0:
            raise ConfigError(f"n_questions must be positive, got {self.n_questions}")
        if self.batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {self.batch_size}")
        if self.max_new_tokens <= 0:
            raise ConfigError(f"max_new_tokens must be positive, got {self.max_new_tokens}")
        if self.match not in MATCH_MODES:
            raise ConfigError(f"match must be one of {', '.join(MATCH_MODES)}, got {self.match!r}")
        if self.probe_questions < 0:
            raise ConfigError(f"probe_questions must be >= 0, got {self.probe_questions}")
        if self.n_examples < 0:
            raise ConfigError(f"n_examples must be >= 0, got {self.n_examples}")
        if self.world_facts.task != "oeqa":
            raise ConfigError(
                "the demo answers open-ended questions: world_facts.task must be oeqa"
            )


def format_examples(run_root: Path, n_examples: int, seed: int = 0) -> str:
    """Example answers of Init-Refuse on the ID sample: right, wrong, refused."""
    path = run_root / "eval" / "id_test" / "init-refuse" / PREDICTIONS_FILE
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    rng = random.Random(seed)
    lines = []
    for verdict in ("correct", "wrong", "refused"):
        pool = [r for r in rows if r["verdict"] == verdict]
        if not pool or n_examples == 0:
            continue
        lines.append(f"Init-Refuse, {verdict} ({len(pool)} of {len(rows)}):")
        for row in rng.sample(pool, min(max(n_examples // 3, 1), len(pool))):
            answer = row["answer"] if len(row["answer"]) <= 70 else row["answer"][:69] + "…"
            lines.append(f"  {row['id']}: {answer!r}   gold: {row['gold'][0]!r}")
    return "\n".join(lines)


def run_demo(cfg: DemoConfig) -> dict:
    """Run the demo's stages in ``cfg.run_dir``; returns the results (``results.json``)."""
    cfg.validate()
    run = RunDir(cfg.run_dir)
    data_stage = run.run(
        "data",
        config_to_dict(cfg.world_facts),
        lambda stage, _resuming: {"manifest": write_world_facts(cfg.world_facts, stage.path)},
    )
    probe_report = ""
    if cfg.probe_questions > 0:
        probe_cfg = ProbeConfig(
            model=cfg.model,
            data=DataSource(
                "world_facts",
                str(data_stage.path),
                "train",
                sample=cfg.probe_questions,
                seed=cfg.seed,
            ),
            shots=DataSource("world_facts", str(data_stage.path), "dev"),
            n_samples=cfg.n_samples,
            batch_size=None,
            match=cfg.match,
            seed=cfg.seed,
        )
        probe_summary = run_probe(probe_cfg, run.root / "probe")
        probe_report = format_probe_report(run.root / "probe" / KNOWLEDGE_FILE, probe_summary)
    results = []
    for split, role in TEST_SETS:
        for method in BASELINES:
            out = run.root / "eval" / split / method
            baseline = run.root / "eval" / split / "init-basic"
            eval_cfg = EvalConfig(
                model=cfg.model,
                data=DataSource(
                    "world_facts",
                    str(data_stage.path),
                    split,
                    sample=cfg.n_questions,
                    seed=cfg.seed,
                ),
                method=method,
                test_set=f"world-facts {split}",
                role=role,
                match=cfg.match,
                max_new_tokens=cfg.max_new_tokens,
                baseline=None if method == "init-basic" else str(baseline),
                batch_size=cfg.batch_size,
                backend="hf",
            )
            result = run_eval(eval_cfg, out)
            result["_file"] = str(out / "metrics.json")
            results.append(result)
    table = results_table(results, title=f"{cfg.model.name} on world facts")
    with atomic_open(run.root / "results.md") as handle:
        handle.write(table + "\n")
    summary = results_json(results)
    write_json(run.root / "results.json", summary)
    print()
    if probe_report:
        print(probe_report + "\n")
    print(table)
    examples = format_examples(run.root, cfg.n_examples, cfg.seed)
    if examples:
        print("\n" + examples)
    print(f"\nRun directory: {run.root} (results.md, results.json)")
    return summary


def format_probe_report(path: Path, summary: dict) -> str:
    """The knowledge map of the probed training questions, in a few lines."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    counts = summary["mu_histogram"]["counts"]
    lines = [
        f"Knowledge probe of {summary['n']} training questions ({rows[0]['task'].upper()}, "
        f"{len(rows[0].get('answers', [])) or 1} samples each): mean µ {summary['mean_mu']:.2f}, "
        f"known (µ ≥ 0.5) {summary['known_fraction']:.0%}",
        "µ histogram (0-0.1 ... 0.9-1): " + " ".join(str(c) for c in counts),
    ]
    ranked = sorted(rows, key=lambda r: (-r["mu"], -r["sigma"], r["id"]))
    for label, row in (("most known", ranked[0]), ("least known", ranked[-1])):
        answers = ", ".join(
            repr(a if len(a) <= 30 else a[:29] + "…") for a in row.get("answers", [])[:4]
        )
        lines.append(f"  {label}: {row['id']}  µ={row['mu']:.1f} σ={row['sigma']:.2f}  {answers}")
    return "\n".join(lines)
