"""``rait demo``: the README's main job on the offline default.

Today it builds the world-facts set, probes the offline default model's (SmolLM2-135M-Instruct)
knowledge of a sample of the training questions (µ, σ), and has it answer a sample of the
in-domain test questions greedily with the basic prompt (GRAIT Table 5, 0-shot), then prints
the knowledge map and how many answers were right, per relation, with examples. Later stages
(build, train, evaluate, report) extend it into the full pipeline.

Stages (each cached and resumable in the run directory):

* ``data``: ``rait data world-facts`` into ``RUN/data``;
* ``probe``: the knowledge probe (µ, σ; METHODS.md section 2) of a sample of the training
  questions, 3-shot from the dev split, 10 samples each, in ``RUN/probe``;
* ``answers``: one row per question in ``RUN/answers/answers.jsonl``, written as batches
  finish, and ``RUN/answers/summary.json``.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from rait.config import config_to_dict
from rait.data.files import read_records
from rait.data.sources import DataSource
from rait.data.world_facts import SPLITS, WorldFactsConfig, write_world_facts
from rait.errors import ConfigError
from rait.fileio import write_json
from rait.matching import MATCH_MODES, first_line, is_correct_open
from rait.models import ModelConfig, load_model
from rait.probe import KNOWLEDGE_FILE, ProbeConfig, run_probe
from rait.prompts import evaluation_messages
from rait.rundir import ResumableJsonl, RunDir, Stage


@dataclass
class DemoConfig:
    """The demo's settings (all overridable with ``--set key=value``)."""

    run_dir: str = "runs/demo"
    model: ModelConfig = field(default_factory=ModelConfig)
    world_facts: WorldFactsConfig = field(default_factory=WorldFactsConfig)
    split: str = "id_test"
    n_questions: int = 80
    seed: int = 0
    batch_size: int = 16
    max_new_tokens: int = 24
    match: str = "contains"
    n_examples: int = 6
    probe_questions: int = 48
    n_samples: int = 10

    def validate(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
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
        if self.world_facts.task != "oeqa":
            raise ConfigError(
                "the demo answers open-ended questions: world_facts.task must be oeqa"
            )


def _answer_stage(cfg: DemoConfig, data_file: Path):
    def run(stage: Stage, resuming: bool) -> dict:
        records = read_records(data_file)
        if cfg.n_questions < len(records):
            keep = sorted(random.Random(cfg.seed).sample(range(len(records)), cfg.n_questions))
            records = [records[i] for i in keep]
        with ResumableJsonl(stage.path / "answers.jsonl") as out:
            todo = [r for r in records if r.id not in out]
            if resuming:
                print(f"  {len(out)} answers already written, {len(todo)} to go")
            if todo:
                from rait.generation import generate

                lm = load_model(cfg.model)
                started = time.perf_counter()
                by_id = {r.id: r for r in todo}
                items = [
                    (r.id, lm.render(evaluation_messages(r, refuse_prompt=False))) for r in todo
                ]
                done = 0
                for batch in generate(lm, items, cfg.max_new_tokens, cfg.batch_size):
                    for key, text in batch:
                        record = by_id[key]
                        answer = first_line(text)
                        out.append(
                            {
                                "id": key,
                                "domain": record.domain,
                                "question": record.question,
                                "gold": list(record.answers or ()),
                                "response": text,
                                "answer": answer,
                                "correct": is_correct_open(answer, record.answers or (), cfg.match),
                            }
                        )
                    done += len(batch)
                    rate = done / (time.perf_counter() - started)
                    print(f"  answered {len(out)}/{len(records)} ({rate:.1f} questions/s)")
            rows = [out.rows[r.id] for r in records]
        summary = summarize(rows)
        write_json(stage.path / "summary.json", summary)
        return {"answers": "answers.jsonl", "summary": "summary.json"}

    return run


def summarize(rows: list[dict]) -> dict:
    """Accuracy overall and per relation."""
    per: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        per[row.get("domain") or "-"].append(bool(row["correct"]))
    return {
        "n": len(rows),
        "accuracy": sum(r["correct"] for r in rows) / len(rows) if rows else 0.0,
        "per_relation": {
            k: {"n": len(v), "accuracy": sum(v) / len(v)} for k, v in sorted(per.items())
        },
    }


def format_report(rows: list[dict], summary: dict, n_examples: int, seed: int = 0) -> str:
    lines = [
        f"Offline default model on {summary['n']} world-facts questions: "
        f"{summary['accuracy']:.1%} correct",
        "",
        f"{'relation':<26} {'n':>4} {'correct':>8}",
    ]
    for name, stats in summary["per_relation"].items():
        lines.append(f"{name:<26} {stats['n']:>4} {stats['accuracy']:>8.1%}")
    rng = random.Random(seed)
    for label, wanted in (("right", True), ("wrong", False)):
        pool = [r for r in rows if bool(r["correct"]) is wanted]
        if not pool:
            continue
        lines += ["", f"Examples the model got {label}:"]
        for row in rng.sample(pool, min(n_examples // 2 or 1, len(pool))):
            lines.append(f"  Q: {row['question']}")
            lines.append(f"     model: {row['answer']!r}   gold: {row['gold'][0]!r}")
    return "\n".join(lines)


def run_demo(cfg: DemoConfig) -> dict:
    """Run the demo's stages in ``cfg.run_dir``; returns the summary."""
    cfg.validate()
    run = RunDir(cfg.run_dir)
    data_stage = run.run(
        "data",
        config_to_dict(cfg.world_facts),
        lambda stage, _resuming: {"manifest": write_world_facts(cfg.world_facts, stage.path)},
    )
    data_file = data_stage.path / f"{cfg.split}.jsonl"
    answer_config = {
        "model": config_to_dict(cfg.model),
        "split": cfg.split,
        "n_questions": cfg.n_questions,
        "seed": cfg.seed,
        "max_new_tokens": cfg.max_new_tokens,
        "match": cfg.match,
        "prompt": "basic (GRAIT Table 5), 0-shot, greedy",
    }
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
    answers = run.run("answers", answer_config, _answer_stage(cfg, data_file), inputs=[data_file])
    with ResumableJsonl(answers.path / "answers.jsonl") as out:
        rows = list(out.rows.values())
    summary = summarize(rows)
    print()
    if probe_report:
        print(probe_report + "\n")
    print(format_report(rows, summary, cfg.n_examples, cfg.seed))
    print(f"\nRun directory: {run.root}")
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
