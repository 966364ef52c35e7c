"""Benchmark: the cost of per-sample loss weights in `rait train`, measured in the same run.

Baseline = TRL's own ``SFTTrainer`` (unweighted token-mean loss). Measured = rait's
``WeightedSFTTrainer`` with non-uniform weights (a weighted mean of per-sample token-mean
losses). Same model (the offline default SmolLM2-135M-Instruct), same LoRA settings
(docs/methods.md §6: r 64, α 16, dropout 0.1, all linear layers), same data (world-facts
training questions under the REFUSE prompt, one in five answered "I don't know"), same seed.
After one discarded warm-up run, runs alternate (baseline, weighted, then weighted, baseline,
...) so that machine noise and warm-up hit both alike; the median time of each is compared.
Target: weighted ≤ 1.05 × baseline.

Run:  .venv/bin/python bench/train_weights.py  [--n 64] [--repeats 4] [--batch-size 8]
Writes bench/results/train_weights.json and prints a table (CPU samples/s included).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from rait.data.sources import DataSource, load_source
from rait.data.world_facts import WorldFactsConfig, write_world_facts
from rait.models import ModelConfig, load_model
from rait.prompts import REFUSAL_ANSWER, training_messages
from rait.train import TrainConfig, TrainExample, build_trainer, tokenize_rows

ROOT = Path(__file__).resolve().parents[1]


def make_rows(n: int, seed: int) -> list[dict]:
    folder = Path(tempfile.mkdtemp(prefix="rait-bench-wf-"))
    write_world_facts(WorldFactsConfig(), folder)
    records = load_source(DataSource(format="world_facts", path=str(folder), split="train"))
    rng = random.Random(seed)
    chosen = rng.sample(records, n)
    rows = []
    for i, record in enumerate(chosen):
        idk = i % 5 == 0
        answer = REFUSAL_ANSWER["oeqa"] if idk else record.canonical_answer
        messages = training_messages(record, answer)
        rows.append(
            {
                "id": record.id,
                "prompt": messages[:1],
                "completion": messages[1:],
                # GRAIT-like weights on the IdK side: mean 1, spread by exp(I/τ)
                "weight": rng.lognormvariate(0.0, 0.5) if idk else 1.0,
                "_line": i + 1,
            }
        )
    return rows


def time_run(cfg: TrainConfig, examples: list[TrainExample], weighted: bool) -> dict:
    lm = load_model(cfg.model)
    lm.model.train()
    with tempfile.TemporaryDirectory() as out:
        trainer = build_trainer(cfg, examples, Path(out), lm, lm.model, weighted=weighted)
        started = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "loss": result.training_loss, "steps": trainer.state.global_step}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=64, help="training samples per run")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_weights.json"))
    args = parser.parse_args()

    cfg = TrainConfig(
        model=ModelConfig(),
        data="bench",
        batch_size=args.batch_size,
        effective_batch_size=16,
        epochs=args.epochs,
        save_steps=10**9,
        logging_steps=10**9,
        seed=args.seed,
    )
    rows = make_rows(args.n, args.seed)
    lm = load_model(cfg.model)
    examples = tokenize_rows(rows, lm.tokenizer, lm.use_chat_template, cfg.max_length, "bench")
    del lm
    tokens = sum(len(e.prompt_ids) + len(e.completion_ids) for e in examples)
    print(
        f"{len(examples)} samples ({tokens / len(examples):.0f} tokens each on average), "
        f"LoRA r {cfg.lora_r}, batch {cfg.batch_size} x accumulation "
        f"{cfg.accumulation_steps()} = {cfg.effective_batch_size}, {args.repeats} repeats",
        file=sys.stderr,
    )
    runs: dict[str, list[dict]] = {"baseline": [], "weighted": []}
    warm = time_run(cfg, examples[:16], weighted=False)  # first run pays one-time costs
    print(f"  warm-up (discarded): {warm['seconds']:.1f}s", file=sys.stderr)
    for repeat in range(args.repeats):
        order = ("baseline", "weighted") if repeat % 2 == 0 else ("weighted", "baseline")
        for name in order:
            run = time_run(cfg, examples, weighted=name == "weighted")
            runs[name].append(run)
            print(f"  repeat {repeat + 1} {name}: {run['seconds']:.1f}s", file=sys.stderr)
    base = statistics.median(r["seconds"] for r in runs["baseline"])
    weighted = statistics.median(r["seconds"] for r in runs["weighted"])
    samples = len(examples) * args.epochs
    ratio = weighted / base
    result = {
        "benchmark": "train_weights",
        "model": cfg.model.name,
        "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(0),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "n_samples": len(examples),
        "mean_tokens": tokens / len(examples),
        "epochs": args.epochs,
        "batch_size": cfg.batch_size,
        "effective_batch_size": cfg.effective_batch_size,
        "lora_r": cfg.lora_r,
        "repeats": args.repeats,
        "baseline_seconds": [r["seconds"] for r in runs["baseline"]],
        "weighted_seconds": [r["seconds"] for r in runs["weighted"]],
        "baseline_median_s": base,
        "weighted_median_s": weighted,
        "baseline_samples_per_s": samples / base,
        "weighted_samples_per_s": samples / weighted,
        "ratio": ratio,
        "overhead_pct": 100 * (ratio - 1),
        "target_ratio": 1.05,
        "meets_target": ratio <= 1.05,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("| trainer | median time | samples/s | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| TRL SFTTrainer (unweighted, baseline) | {base:.1f} s | {samples / base:.2f} | 1.00 |")
    print(
        f"| rait WeightedSFTTrainer (per-sample weights) | {weighted:.1f} s | "
        f"{samples / weighted:.2f} | {ratio:.3f} ({100 * (ratio - 1):+.1f}%) |"
    )
    print(f"target ≤ 1.05: {'met' if ratio <= 1.05 else 'NOT met'}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
