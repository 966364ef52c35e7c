"""``rait demo``: the README's main job, every method on the offline default.

The demo is :func:`rait.pipeline.run_pipeline` on a built-in config
(:func:`demo_config_dict`, the same as ``configs/demo.yaml``): the offline world-facts set,
the offline default model (SmolLM2-135M-Instruct, on CPU), a shared probe of 200 training
questions, CRaFT's rehearsal, GRAIT's influence at a rank-8 warm-up LoRA, and for every
data-construction method a 40 + 10 sample set, a LoRA trained for 2 epochs and an evaluation on
100 in-domain and 100 out-of-domain test questions, next to the two baselines. The sizes are
chosen so that the whole run fits in 45 minutes on a 2-core CPU (timed in the README).

After the run it prints the knowledge map of the probed questions, the results table and
example answers that changed between the base model (Init-Refuse) and the trained models.
Every stage is cached in the run directory: a rerun is instant, a killed run resumes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rait.config import apply_overrides, build_config, load_yaml
from rait.errors import ConfigError
from rait.pipeline import BASELINES, PipelineConfig, run_pipeline
from rait.probe import KNOWLEDGE_FILE
from rait.results import METHOD_ORDER

#: every data-construction method, in the papers' row order (craft-no-flow is CorCer-RAIT)
DEMO_METHODS = [m for m in METHOD_ORDER if m not in BASELINES and m != "craft-no-flow"]


def demo_config_dict() -> dict[str, Any]:
    """The demo's pipeline config as plain data (``configs/demo.yaml`` holds the same)."""

    def world_facts(split: str, sample: int | None = None) -> dict[str, Any]:
        source: dict[str, Any] = {"format": "world_facts", "split": split}
        if sample is not None:
            source["sample"] = sample
        return source

    return {
        "run_dir": "runs/demo",
        "title": "World facts, SmolLM2-135M-Instruct (LoRA on CPU, rait demo)",
        "model": {"name": "smollm2-135m-instruct"},
        "world_facts": {"task": "oeqa"},
        "data": world_facts("train", 200),
        "shots": world_facts("dev"),
        "tests": [
            {"name": "wf-id", "role": "id", "data": world_facts("id_test", 100)},
            {"name": "wf-ood", "role": "ood", "data": world_facts("ood_test", 100)},
        ],
        "baselines": ["init-basic", "init-refuse"],
        "methods": list(DEMO_METHODS),
        "probe": {"n_samples": 10},
        # SmolLM2-135M is rarely certain at T = 1: the released thresholds (0.995) keep almost
        # nothing, so the rehearsal and GRAIT's warm-up take µ ≥ 0.7 and σ ≥ 0.7
        "rehearse": {"min_mu": 0.7, "min_sigma": 0.7, "train": {"epochs": 2.0}},
        "influence": {
            "warmup_min_mu": 0.7,
            "warmup_min_sigma": 0.7,
            "train": {"lora_r": 8, "epochs": 2.0},
        },
        "build": {"n_van": 40, "n_idk": 10, "seed": 0},
        "train": {"epochs": 2.0},
        "eval": {"batch_size": 16, "max_new_tokens": 24},
    }


def load_demo_config(
    path: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    n_questions: int | None = None,
) -> PipelineConfig:
    """The demo's config: the built-in one (or the YAML at ``path``), then ``--set``
    overrides; ``n_questions`` sets every test set's sample size."""
    data = load_yaml(path) if path else demo_config_dict()
    origin = str(path) if path else "rait demo"
    if overrides:
        data = apply_overrides(data, overrides)
        origin += " (with --set overrides)"
    if n_questions is not None:
        if n_questions <= 0:
            raise ConfigError(f"--n-questions must be positive, got {n_questions}")
        for test in data.get("tests") or []:
            if isinstance(test, dict):
                test.setdefault("data", {})["sample"] = n_questions
    return build_config(PipelineConfig, data, origin=origin)


def run_demo(cfg: PipelineConfig, n_examples: int = 6) -> dict:
    """Run the demo's pipeline and its report, then print the knowledge map, answers that
    turned into refusals and where the report is."""
    from rait.report import (
        ReportConfig,
        changed_answers,
        format_changed_answers,
        load_run,
        run_report,
    )

    summary = run_pipeline(cfg)
    root = Path(cfg.run_dir)
    report = run_report(ReportConfig(run_dir=str(root), n_examples=n_examples))
    print()
    print(format_probe_report(root / "probe" / KNOWLEDGE_FILE))
    examples = format_changed_answers(changed_answers(load_run(root)["metrics"], n_examples // 2))
    if examples:
        print("\n" + examples)
    print(f"\nRun directory: {root} (results.md, results.json)")
    print(f"Report: {report['html']} (and {Path(report['markdown']).name})")
    summary["report"] = report
    return summary


def format_probe_report(path: Path) -> str:
    """The knowledge map of the probed training questions, in a few lines."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    mus = [r["mu"] for r in rows]
    counts = [0] * 10
    for mu in mus:
        counts[min(int(mu * 10), 9)] += 1
    lines = [
        f"Knowledge probe of {len(rows)} training questions ({rows[0]['task'].upper()}, "
        f"{len(rows[0].get('answers', [])) or 1} samples each): mean µ "
        f"{sum(mus) / len(mus):.2f}, known (µ ≥ 0.5) {sum(m >= 0.5 for m in mus) / len(mus):.0%}",
        "µ histogram (0-0.1 ... 0.9-1): " + " ".join(str(c) for c in counts),
    ]
    ranked = sorted(rows, key=lambda r: (-r["mu"], -r["sigma"], r["id"]))
    for label, row in (("most known", ranked[0]), ("least known", ranked[-1])):
        answers = ", ".join(
            repr(a if len(a) <= 30 else a[:29] + "…") for a in row.get("answers", [])[:4]
        )
        lines.append(f"  {label}: {row['id']}  µ={row['mu']:.1f} σ={row['sigma']:.2f}  {answers}")
    return "\n".join(lines)
