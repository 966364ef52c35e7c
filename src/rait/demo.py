"""``rait demo``: the README's main job, the papers' headline methods on the offline default.

The demo is :func:`rait.pipeline.run_pipeline` on ``configs/demo.yaml`` (read from the
package, :func:`demo_config_path`): the offline world-facts set, the offline default model
(SmolLM2-135M-Instruct, on CPU), a shared probe of 200 training questions, CRaFT's rehearsal,
GRAIT's influence at a rank-8 warm-up LoRA, and for Van-Tuning, Cor-RAIT, CRaFT and GRAIT a
45 + 45 sample set, a LoRA trained for 3 epochs (68 steps) and an evaluation on all 564
in-domain and 100 out-of-domain test questions, next to the two baselines; ``rait demo --all``
adds every other method. The sizes are chosen to teach refusal within 45 minutes on a 2-core
CPU (timed in the README; docs/pipeline.md#the-demo).

After the run it prints the knowledge map of the probed questions, the results table and
example answers that changed between the base model (Init-Refuse) and the trained models.
Every stage is cached in the run directory: a rerun is instant, a killed run resumes.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from rait.artifacts import RunLayout
from rait.config import apply_overrides, build_config, load_yaml
from rait.errors import ConfigError
from rait.pipeline import PipelineConfig, run_pipeline
from rait.report import ReportConfig, changed_answers, format_changed_answers, load_run, run_report


def demo_config_path() -> Path:
    """The demo's pipeline config, ``configs/demo.yaml``, shipped inside the package
    (``rait/configs/demo.yaml``; the repository's ``configs`` folder is a link to it)."""
    return Path(str(resources.files("rait") / "configs" / "demo.yaml"))


def load_demo_config(
    path: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    n_questions: int | None = None,
    all_methods: bool = False,
) -> PipelineConfig:
    """The demo's config: the built-in one (or the YAML at ``path``), then ``--set``
    overrides; ``n_questions`` sets every test set's sample size; ``all_methods`` runs every
    registered method (``rait demo --all``) in the same run directory (its stages are cached
    like any run's: the probe gains R-Tuning's queries, so it and what follows from it run
    again)."""
    path = path or str(demo_config_path())
    data = load_yaml(path)
    origin = str(path)
    if all_methods:
        if any(str(o).split("=", 1)[0].strip() == "methods" for o in overrides):
            raise ConfigError("--all runs every method: leave out --methods (or --all)")
        data.pop("methods", None)  # the default: every registered method, the papers' order
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
    summary = run_pipeline(cfg)
    root = Path(cfg.run_dir)
    report = run_report(ReportConfig(run_dir=str(root), n_examples=n_examples))
    print()
    print(format_probe_report(RunLayout(root).knowledge))
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
