"""Benchmark: `rait probe` against the plain ways of probing, measured in the same run.

MCQA: 200 MMLU validation questions (5-shot, shots from MMLU dev) with the offline default
model. Baseline = the released CRaFT code's way: one forward pass per option, per question,
batch size 1, the full prompt every time. Check: same µ to 1e-4; target >= 8x faster.

OEQA: 100 world-facts training questions (3-shot, shots from the dev split), 10 samples at
T = 1.0. Baseline = ``generate(num_return_sequences=10)`` per question. Checks: µ
distributions equal within sampling noise (paired difference of the means within 3 standard
errors), and identical answers in greedy mode; target >= 3x faster.

Run:  .venv/bin/python bench/probe_speed.py  [--mmlu DIR] [--n-mcqa 200] [--n-oeqa 100]
Writes bench/results/probe_speed.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

from rait.backends.hf import HFEngine
from rait.data.sources import DataSource, load_source
from rait.data.world_facts import WorldFactsConfig, write_world_facts
from rait.encoders import load_encoder
from rait.matching import first_line, is_correct_open
from rait.models import ModelConfig, load_model
from rait.probe import (
    ProbeConfig,
    Prober,
    _group_prefix,
    _grouped_batches,
    default_batch_size,
    select_shots,
)

ROOT = Path(__file__).resolve().parents[1]


def baseline_mcqa(lm, prompts, records, option_ids):
    """CRaFT's released way: for each option, score prompt + option letter in a separate
    forward pass of the full sequence, batch size 1."""
    mus = []
    for prompt, record in zip(prompts, records):
        base = lm.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        logps = []
        for token in option_ids[len(record.choices)]:
            ids = torch.tensor([[*base, token]])
            with torch.inference_mode():
                logits = lm.model(input_ids=ids).logits[0, -2].float()
            logps.append(float(torch.log_softmax(logits, dim=-1)[token]))
        top = max(logps)
        exps = [math.exp(x - top) for x in logps]
        mus.append(exps[record.gold] / sum(exps))
    return mus


def baseline_oeqa(lm, prompts, records, n, temperature, max_new_tokens, seed):
    """``generate(num_return_sequences=n)`` per question; answer = first line."""
    answers = []
    torch.manual_seed(seed)
    for prompt in prompts:
        ids = lm.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        kwargs = {"max_new_tokens": max_new_tokens, "pad_token_id": lm.tokenizer.pad_token_id}
        if temperature > 0:
            kwargs.update(
                do_sample=True, temperature=temperature, top_k=0, top_p=1.0, num_return_sequences=n
            )
        else:
            kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None)
        with torch.inference_mode():
            out = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        texts = lm.tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
        answers.append([first_line(t) for t in texts])
    return answers


def run_rait(prober, records, shots_of, batch_size, task):
    rows = []
    for batch in _grouped_batches(records, shots_of, batch_size):
        prober.engine.set_shared_prefix(_group_prefix(prober, batch[0], shots_of))
        prompts = [prober.render(r, shots_of[r.id]) for r in batch]
        rows += (prober.probe_mcqa if task == "mcqa" else prober.probe_oeqa)(batch, prompts)
    by_id = {r["id"]: r for r in rows}
    return [by_id[r.id] for r in records]


def mean_se(values):
    m = sum(values) / len(values)
    var = sum((v - m) ** 2 for v in values) / max(len(values) - 1, 1)
    return m, math.sqrt(var / len(values))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mmlu", default=str(ROOT.parent / "shared" / "data" / "mmlu"))
    parser.add_argument("--n-mcqa", type=int, default=200)
    parser.add_argument("--n-oeqa", type=int, default=100)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="default: rait probe's own (MCQA on CPU 1, OEQA 8)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "probe_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    lm = load_model(ModelConfig())
    engine = HFEngine(lm, batch_size=8)
    results: dict = {
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "model": "smollm2-135m-instruct",
    }
    table = []

    # ---------------------------------------------------------------- MCQA
    if args.n_mcqa > 0:
        mmlu = Path(args.mmlu)
        if not (mmlu / "val").is_dir():
            print(f"MMLU copy not found at {mmlu} (pass --mmlu); skipping MCQA", file=sys.stderr)
        else:
            records = load_source(
                DataSource(
                    format="mmlu",
                    path=str(mmlu / "val"),
                    split="val",
                    sample=args.n_mcqa,
                    seed=args.seed,
                )
            )
            pool = load_source(DataSource(format="mmlu", path=str(mmlu / "dev"), split="dev"))
            cfg = ProbeConfig(batch_size=args.batch_size, rtuning=False, backend="hf")
            engine.batch_size = default_batch_size(cfg, "mcqa", "hf")
            prober = Prober(cfg, engine, lm.use_chat_template)
            shots_of = {r.id: select_shots(r, pool, 5) for r in records}
            start = time.perf_counter()
            rows = run_rait(prober, records, shots_of, engine.batch_size, "mcqa")
            t_rait = time.perf_counter() - start
            prompts = [prober.render(r, shots_of[r.id]) for r in records]
            start = time.perf_counter()
            base_mu = baseline_mcqa(lm, prompts, records, prober._option_ids)
            t_base = time.perf_counter() - start
            diff = max(abs(r["mu"] - b) for r, b in zip(rows, base_mu))
            results["mcqa"] = {
                "n": len(records),
                "batch_size": engine.batch_size,
                "rait_seconds": t_rait,
                "baseline_seconds": t_base,
                "speedup": t_base / t_rait,
                "max_abs_mu_diff": diff,
                "mean_prompt_tokens": sum(len(engine.encode(p)) for p in prompts) / len(prompts),
            }
            table.append(
                (
                    "MCQA µ,σ (MMLU val, 5-shot)",
                    len(records),
                    t_base,
                    t_rait,
                    f"max |Δµ| = {diff:.1e}",
                )
            )

    # ---------------------------------------------------------------- OEQA
    if args.n_oeqa > 0:
        with tempfile.TemporaryDirectory() as tmp:
            write_world_facts(WorldFactsConfig(), tmp)
            records = load_source(
                DataSource(
                    format="world_facts",
                    path=tmp,
                    split="train",
                    sample=args.n_oeqa,
                    seed=args.seed,
                )
            )
            pool = load_source(DataSource(format="world_facts", path=tmp, split="dev"))
        cfg = ProbeConfig(batch_size=args.batch_size, rtuning=False, backend="hf", seed=args.seed)
        engine.batch_size = default_batch_size(cfg, "oeqa", "hf")
        prober = Prober(cfg, engine, lm.use_chat_template, load_encoder())
        shots_of = {r.id: select_shots(r, pool, 3) for r in records}
        prompts = [prober.render(r, shots_of[r.id]) for r in records]
        start = time.perf_counter()
        rows = run_rait(prober, records, shots_of, engine.batch_size, "oeqa")
        t_rait = time.perf_counter() - start
        start = time.perf_counter()
        base_answers = baseline_oeqa(
            lm, prompts, records, cfg.n_samples, 1.0, cfg.max_new_tokens, args.seed
        )
        t_base = time.perf_counter() - start
        base_mu = [
            sum(is_correct_open(a, r.answers, "contains") for a in ans) / len(ans)
            for ans, r in zip(base_answers, records)
        ]
        rait_mu = [r["mu"] for r in rows]
        m_rait, _ = mean_se(rait_mu)
        m_base, _ = mean_se(base_mu)
        d_mean, d_se = mean_se([a - b for a, b in zip(rait_mu, base_mu)])
        # greedy mode: identical answers
        greedy = engine.sample(prompts, [r.id for r in records], 1, 0.0, cfg.max_new_tokens)
        base_greedy = baseline_oeqa(lm, prompts, records, 1, 0.0, cfg.max_new_tokens, 0)
        same = sum(first_line(g[0].text) == b[0] for g, b in zip(greedy, base_greedy))
        results["oeqa"] = {
            "batch_size": engine.batch_size,
            "n": len(records),
            "samples": cfg.n_samples,
            "rait_seconds": t_rait,
            "baseline_seconds": t_base,
            "speedup": t_base / t_rait,
            "mean_mu_rait": m_rait,
            "mean_mu_baseline": m_base,
            "paired_mu_difference": d_mean,
            "paired_mu_difference_se": d_se,
            "within_3_se": abs(d_mean) <= 3 * max(d_se, 1e-12),
            "greedy_identical": same,
            "greedy_total": len(records),
        }
        table.append(
            (
                "OEQA µ,σ (world facts, 3-shot, N=10)",
                len(records),
                t_base,
                t_rait,
                f"mean µ {m_rait:.3f} vs {m_base:.3f} (Δ {d_mean:+.3f} ± {d_se:.3f}); "
                f"greedy identical {same}/{len(records)}",
            )
        )

    print(f"\n{'task':<40} {'n':>4} {'baseline s':>11} {'rait s':>8} {'speed-up':>9}  check")
    for name, n, tb, tr, check in table:
        print(f"{name:<40} {n:>4} {tb:>11.1f} {tr:>8.1f} {tb / tr:>8.1f}x  {check}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    random.seed(0)
    sys.exit(main())
