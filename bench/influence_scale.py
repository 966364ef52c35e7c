"""Benchmark: GRAIT's gradient influence at the papers' scale, measured here and modelled at 8B.

**Measured on this CPU** (the offline default SmolLM2-135M-Instruct, float32, a LoRA on every
linear layer with seeded B matrices as in ``bench/influence_speed.py``; world-facts samples
under the REFUSE prompt with the refusal target), each in the same run:

* the **floor**: one batched forward + backward over the same samples
  (``sample_losses(batch).sum().backward()``, batches of ``--batch-size``): what any per-sample
  method costs at least;
* the per-sample gradient pass alone (:class:`rait.gradients.PerSampleGradients`, B × D);
* the generation rate of P (signs/s) by :class:`rait.projection.RademacherProjector` on this
  device, beside the former generator (NumPy PCG64 on the CPU, unpacked by a table);
* a dense fp32 product (rows × 128)(128 × k), the projection's arithmetic rate;
* ``rait influence`` end to end in each mode — ``rademacher`` (dense, the default),
  ``factorized`` (LoGra), ``none`` (exact) — and the LESS loop (batch 1, project every 16,
  P generated again each time; ``bench/influence_speed.py``), with each mode's Spearman
  correlation of I_ref and I_sta against the exact scores.

Targets: on this CPU the fastest mode that is exact enough (Spearman ≥ 0.9 against the exact
scores on both I_ref and I_sta) within 1.5× the floor; by the cost model below, the default
mode ≤ 2 GPU-hours for the MMLU setup (14,042 questions) on one H200.

**Cost model** (LLaMA-3-8B-Instruct, LoRA r 64 on all 7 linear layers of its 32 blocks, bf16
weights, fp32 gradients and features; its shapes from the model card: hidden 4096, MLP 14,336,
8 KV heads of 128, 8.03e9 parameters):

* D = Σ_layers r · (in + out) = 167,772,160 LoRA parameters; T = the mean tokens of a gradient
  sample (measured here with the offline tokenizer: MMLU from ``--mmlu`` when given, else world
  facts; TriviaQA: the world-facts OEQA samples, whose questions are as short).
* Gradient pass: 4 · 8.03e9 · T FLOPs a sample (forward 2NT, the backward's activation gradients
  2NT; LoRA's own weight gradients are negligible) at ``MFU`` of the bf16 peak, plus the per-sample
  LoRA gradients 2 · D · T at the fp32 rate.
* Dense projection (``rademacher``): 2 · D · k FLOPs a sample at ``FP32_EFFICIENCY`` of the fp32
  peak (torch's default fp32 matmul on CUDA, no TF32), and P (D × k signs) generated once per
  chunk: chunks = ⌈N / c⌉, c = :func:`rait.influence.plan_chunks` of a row (4·D + 4·k bytes) in
  ``chunk_memory_gb`` and 3/4 of the memory left by the bf16 weights, less a GPU block of P
  (:func:`rait.projection.block_work_bytes`), as ``rait influence`` plans it. Generation is
  memory-bound on a GPU: ``BYTES_PER_SIGN`` bytes of HBM traffic a sign (the integer hash's
  elementwise kernels on one int64 word per 32 signs, the byte-to-sign table lookup writing
  fp32, and the product reading it back; the derivation is in docs/influence.md).
* Factorised (``factorized``, factor_dim f = 64): per layer, the cheaper of projecting the
  activations (2T(wide · f + f · r)) or forming the layer's gradient and projecting it
  (2r · wide · (T + f)), as :func:`rait.gradients.factorized_layer` chooses; F = Σ 2 · r · f
  features a sample; two passes (the gradient pass twice) when the N × F features and their
  gathered copy do not fit in ``HOST_FEATURE_SHARE`` of the host's memory (``HOST_GB``), and
  always with several processes (``rait.influence._keep_all_features``).
* Eight GPUs: each process takes every 8th batch (``rait influence`` under torchrun), so N/8
  samples and ⌈N/8/c⌉ generations of P each; GPU-hours are 8 × the wall time.

Run:  .venv/bin/python bench/influence_scale.py  [--n 64] [--mmlu DIR] [--threads 2]
Writes bench/results/influence_scale.json and prints two tables.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

# --------------------------------------------------------------------------- the model's figures
LLAMA3_8B = {
    "parameters": 8.03e9,
    "layers": 32,
    # (in, out) of q, k, v, o, gate, up, down
    "linear": [
        (4096, 4096),
        (4096, 1024),
        (4096, 1024),
        (4096, 4096),
        (4096, 14336),
        (4096, 14336),
        (14336, 4096),
    ],
    "weights_bytes": 2 * 8.03e9,  # bf16
}
GPUS = {
    # dense peaks from NVIDIA's data sheets (SXM): bf16 tensor, fp32 (no TF32), HBM, memory
    "H100": {"bf16": 989e12, "fp32": 67e12, "hbm": 3.35e12, "memory": 80e9},
    "H200": {"bf16": 989e12, "fp32": 67e12, "hbm": 4.8e12, "memory": 141e9},
}
MFU = 0.35  # share of the bf16 peak a forward + backward of an 8B model reaches
FP32_EFFICIENCY = 0.7  # share of the fp32 peak a large fp32 GEMM reaches
BYTES_PER_SIGN = 20.0  # HBM traffic per generated sign (docs/influence.md#cost-model)
HBM_EFFICIENCY = 0.8  # share of the HBM bandwidth elementwise kernels reach
HOST_GB = 1000.0  # host memory of an 8-GPU node (for the factorised features)
SETUPS = {"MMLU": 14_042, "TriviaQA": 87_622}
LORA_R = 64
K = 8192
FACTOR_DIM = 64
EXACT_ENOUGH = 0.9  # Spearman against the exact scores, both I_ref and I_sta


def lora_dim(r: int = LORA_R) -> int:
    return LLAMA3_8B["layers"] * sum(r * (i + o) for i, o in LLAMA3_8B["linear"])


def factor_features(r: int = LORA_R, f: int = FACTOR_DIM) -> int:
    """F: per LoRA pair, lora_A (r × in) gives r · min(in, f), lora_B (out × r) min(out, f) · r."""
    per_block = sum(r * min(i, f) + min(o, f) * r for i, o in LLAMA3_8B["linear"])
    return LLAMA3_8B["layers"] * per_block


def factor_flops(tokens: float, r: int = LORA_R, f: int = FACTOR_DIM) -> float:
    """Per sample: for lora_A the wide side is ``in``, for lora_B ``out`` (the other is r)."""
    total = 0.0
    for i, o in LLAMA3_8B["linear"]:
        for wide in (i, o):
            project = 2 * tokens * (wide * f + f * r)
            gradient = 2 * r * wide * (tokens + f)
            total += min(project, gradient)
    return LLAMA3_8B["layers"] * total


def model_cost(
    mode: str, n: int, tokens: float, gpu: str, n_gpus: int, chunk_memory_gb: float | None
) -> dict:
    """Seconds (wall) and GPU-hours of ``rait influence`` in ``mode`` (module docstring)."""
    from rait.influence import HOST_FEATURE_SHARE, plan_chunks
    from rait.projection import block_work_bytes, default_rows_per_block

    spec = GPUS[gpu]
    dim = lora_dim()
    per_gpu = math.ceil(n / n_gpus)
    model_flops = 4 * LLAMA3_8B["parameters"] * tokens
    grad_s = per_gpu * model_flops / (MFU * spec["bf16"])
    free = spec["memory"] - LLAMA3_8B["weights_bytes"]
    limit = chunk_memory_gb if chunk_memory_gb is not None else free / 2**30
    out = {"gradient_pass_s": grad_s}
    if mode == "rademacher":
        block = block_work_bytes(default_rows_per_block("cuda", K), K)  # P's block on a GPU
        plan = plan_chunks(4 * dim + 4 * K, 16, limit, int(free), block)
        chunks = math.ceil(per_gpu / plan.chunk)
        signs = chunks * dim * K
        rate = HBM_EFFICIENCY * spec["hbm"] / BYTES_PER_SIGN
        out |= {
            "per_sample_gradients_s": per_gpu * 2 * dim * tokens / (FP32_EFFICIENCY * spec["fp32"]),
            "projection_s": per_gpu * 2 * dim * K / (FP32_EFFICIENCY * spec["fp32"]),
            "generation_s": signs / rate,
            "samples_per_chunk": plan.chunk,
            "chunks": chunks,
            "signs_per_second": rate,
        }
    elif mode == "factorized":
        width = factor_features()
        # one pass keeps every feature (and a gathered copy) on one process's host; several
        # processes take two passes (rait.influence._keep_all_features)
        fits = 2 * n * width * 4 <= HOST_FEATURE_SHARE * HOST_GB * 1e9
        passes = 1 if n_gpus == 1 and fits else 2
        out |= {
            "gradient_pass_s": passes * grad_s,
            "factorised_projection_s": passes
            * per_gpu
            * factor_flops(tokens)
            / (FP32_EFFICIENCY * spec["fp32"]),
            "features": width,
            "passes": passes,
        }
    else:
        raise ValueError(mode)
    seconds = sum(v for k, v in out.items() if k.endswith("_s"))
    return out | {"seconds": seconds, "gpu_hours": seconds * n_gpus / 3600}


# --------------------------------------------------------------------------- measured here
def mean_tokens(examples) -> float:
    return statistics.fmean(len(e.features["input_ids"]) for e in examples)


def mmlu_tokens(folder: str | None, tokenizer, chat: bool) -> tuple[float, str]:
    """Mean tokens of MMLU gradient samples (REFUSE prompt, refusal target), from real MMLU
    test questions when ``folder`` is given."""
    if folder is None:
        return float("nan"), "not measured (no --mmlu)"
    import random

    from rait.data.sources import DataSource, load_source
    from rait.influence import gradient_examples

    records = load_source(DataSource(format="mmlu", path=folder, split="test"))
    chosen = random.Random(0).sample(records, min(500, len(records)))
    examples = gradient_examples(chosen, {r.id: 0.0 for r in chosen}, tokenizer, chat)
    return mean_tokens(examples), f"{len(chosen)} MMLU test questions from {folder}"


def timed(fn, repeat: int = 1):
    best = math.inf
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - started)
    return best, value


def floor_pass(model, examples, pad, batch_size: int) -> float:
    """One batched forward + backward over the samples (the LoRA gradients accumulate)."""
    from rait.gradients import collate, sample_losses
    from rait.influence import _batches

    model.zero_grad(set_to_none=True)

    def run():
        for batch in _batches(examples, batch_size):
            feats = [examples[i].features for i in batch]
            sample_losses(model, collate(feats, pad, "cpu")).sum().backward()

    seconds, _ = timed(run)
    model.zero_grad(set_to_none=True)
    return seconds


def gradient_pass(engine, examples, pad, batch_size: int) -> float:
    from rait.gradients import collate
    from rait.influence import _batches

    def run():
        for batch in _batches(examples, batch_size):
            engine(collate([examples[i].features for i in batch], pad, "cpu"))

    return timed(run)[0]


def generation_rates(dim: int, k: int, blocks: int = 8) -> dict:
    """Signs/s of the projector's generator on this CPU, and of the former PCG64 stream."""
    import numpy as np
    import torch

    from rait.projection import RademacherProjector

    projector = RademacherProjector(dim, k, seed=0)
    projector.block(0)  # warm the buffers
    n_blocks = min(blocks, projector.n_blocks - 1)

    def new():
        for b in range(1, n_blocks + 1):
            projector.block(b)

    seconds, _ = timed(new, repeat=2)
    rows = projector.block(1).shape[0]
    new_rate = n_blocks * rows * k / seconds
    table = ((torch.arange(256)[:, None] >> torch.arange(8)) & 1).float() * 2 - 1
    old_rows = 512

    def old():
        for b in range(n_blocks):
            stream = np.random.PCG64(np.random.SeedSequence([0, b]))
            raw = stream.random_raw(old_rows * k // 64).astype("<u8", copy=False).view(np.uint8)
            torch.index_select(table, 0, torch.from_numpy(raw).long())

    old_seconds, _ = timed(old, repeat=2)
    return {"new": new_rate, "pcg64_former": n_blocks * old_rows * k / old_seconds}


def gemm_rate(k: int) -> float:
    import torch

    a, b = torch.randn(64, 128), torch.randn(128, k)
    out = torch.zeros(64, k)
    seconds, _ = timed(lambda: [out.addmm_(a, b) for _ in range(50)], repeat=3)
    return 50 * 2 * 64 * 128 * k / seconds


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a.double().numpy(), b.double().numpy()).statistic)


def measure(args) -> dict:
    import torch
    from influence_speed import less_loop, setup

    from rait.gradients import PerSampleGradients
    from rait.influence import InfluenceSettings, compute_influence

    torch.manual_seed(0)
    lm, model, examples = setup(args.n, args.lora_r, args.seed)
    pad = lm.tokenizer.pad_token_id
    engine = PerSampleGradients(model)
    out = {"n": args.n, "lora_r": args.lora_r, "lora_parameters": engine.dim}
    out["tokens_world_facts"] = mean_tokens(examples)
    out["tokens_mmlu"], out["tokens_mmlu_source"] = mmlu_tokens(
        args.mmlu, lm.tokenizer, lm.use_chat_template
    )
    print("floor, gradient pass ...", file=sys.stderr, flush=True)
    out["floor_s"] = floor_pass(model, examples, pad, args.batch_size)
    out["gradient_pass_s"] = gradient_pass(engine, examples, pad, args.batch_size)
    print("generation, GEMM ...", file=sys.stderr, flush=True)
    out["signs_per_second"] = generation_rates(engine.dim, args.k)
    out["fp32_gemm_flops"] = gemm_rate(args.k)
    modes = {}
    scores = {}
    for mode in ("none", "rademacher", "factorized"):
        print(f"rait influence, projection {mode} ...", file=sys.stderr, flush=True)
        settings = InfluenceSettings(
            projection=mode,
            projection_dim=args.k,
            seed=args.seed,
            batch_size=args.batch_size,
            chunk_memory_gb=args.chunk_memory_gb,
        )
        seconds, result = timed(
            lambda s=settings: compute_influence(engine, examples, s, pad, log=lambda _: None)
        )
        scores[mode] = (result.i_ref, result.i_sta)
        modes[mode] = {"seconds": seconds, "passes": result.passes}
    print("LESS loop ...", file=sys.stderr, flush=True)
    seconds, less = timed(lambda: less_loop(model, examples, pad, args.k, args.seed))
    scores["less"] = less
    modes["less"] = {"seconds": seconds, "passes": 1}
    exact = scores["none"]
    for mode, (i_ref, i_sta) in scores.items():
        modes[mode]["spearman_i_ref"] = spearman(i_ref, exact[0])
        modes[mode]["spearman_i_sta"] = spearman(i_sta, exact[1])
        modes[mode]["x_floor"] = modes[mode]["seconds"] / out["floor_s"]
    out["modes"] = modes
    out["threads"] = torch.get_num_threads()
    return out


# --------------------------------------------------------------------------- report
LABELS = {
    "rademacher": "dense Rademacher (default)",
    "factorized": "factorised (LoGra)",
    "none": "exact (no projection)",
    "less": "LESS loop (batch 1, project every 16)",
}


def report(measured: dict, models: list[dict], args) -> str:
    m = measured
    lines = [
        f"Measured on this CPU ({m['threads']} threads): {m['n']} world-facts samples, "
        f"SmolLM2-135M-Instruct, LoRA r {m['lora_r']} (D = {m['lora_parameters']:,}), "
        f"k {args.k}",
        "",
        "| path | seconds | × floor | Spearman I_ref | Spearman I_sta | passes |",
        "|---|---:|---:|---:|---:|---:|",
        f"| floor: batched forward + backward | {m['floor_s']:.1f} | 1.00 | | | 1 |",
        f"| per-sample gradients alone | {m['gradient_pass_s']:.1f} | "
        f"{m['gradient_pass_s'] / m['floor_s']:.2f} | | | 1 |",
    ]
    for mode in ("rademacher", "factorized", "none", "less"):
        row = m["modes"][mode]
        lines.append(
            f"| {LABELS[mode]} | {row['seconds']:.1f} | {row['x_floor']:.2f} | "
            f"{row['spearman_i_ref']:.4f} | {row['spearman_i_sta']:.4f} | {row['passes']} |"
        )
    rates = m["signs_per_second"]
    lines += [
        "",
        f"P generation here: {rates['new']:.3g} signs/s (former PCG64 stream "
        f"{rates['pcg64_former']:.3g}, ratio {rates['new'] / rates['pcg64_former']:.2f}); fp32 "
        f"GEMM {m['fp32_gemm_flops'] / 1e9:.1f} GFLOP/s. Tokens a sample: world facts "
        f"{m['tokens_world_facts']:.0f}, MMLU {m['tokens_mmlu']:.0f} ({m['tokens_mmlu_source']})",
        "",
        f"Modelled: LLaMA-3-8B LoRA r {LORA_R} (D = {lora_dim():,}), k {K}, MFU {MFU}, fp32 "
        f"GEMM at {FP32_EFFICIENCY:.0%} of peak, P at {BYTES_PER_SIGN:g} B/sign of HBM traffic",
        "",
        "| setup | mode | GPUs | chunk (samples) | gradient s | projection s | P generation s "
        "| wall h | GPU-h |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in models:
        c = row["cost"]
        projection = c.get("projection_s", 0) + c.get("factorised_projection_s", 0)
        projection += c.get("per_sample_gradients_s", 0)
        lines.append(
            f"| {row['setup']} ({row['n']:,}) | {row['mode']} | {row['n_gpus']} × {row['gpu']} | "
            f"{c.get('samples_per_chunk', '—')} | {c['gradient_pass_s']:.0f} | {projection:.0f} "
            f"| {c.get('generation_s', 0):.0f} | {c['seconds'] / 3600:.2f} | {c['gpu_hours']:.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--lora-r", dest="lora_r", type=int, default=8)
    parser.add_argument("--k", type=int, default=K)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=16)
    parser.add_argument("--chunk-memory-gb", dest="chunk_memory_gb", type=float, default=None)
    parser.add_argument("--mmlu", help="a folder of MMLU CSVs (dev/val/test), for T")
    parser.add_argument("--threads", type=int, help="torch threads (default: rait's share)")
    parser.add_argument(
        "--measured",
        help="reuse the CPU measurements of an earlier run's JSON and only model the cost",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "influence_scale.json"))
    args = parser.parse_args()
    import torch

    if args.threads:  # rait's own setting: loading the model re-splits the cores
        os.environ["RAIT_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    if args.measured:
        measured = json.loads(Path(args.measured).read_text())["measured"]
    else:
        measured = measure(args)
    tokens = {
        "MMLU": measured["tokens_mmlu"]
        if math.isfinite(measured["tokens_mmlu"])
        else measured["tokens_world_facts"],
        "TriviaQA": measured["tokens_world_facts"],
    }
    models = []
    for setup, n in SETUPS.items():
        for mode in ("rademacher", "factorized"):
            for gpu, n_gpus in (("H200", 1), ("H100", 1), ("H100", 8)):
                cost = model_cost(mode, n, tokens[setup], gpu, n_gpus, args.chunk_memory_gb)
                models.append(
                    {"setup": setup, "n": n, "mode": mode, "gpu": gpu, "n_gpus": n_gpus}
                    | {"tokens": tokens[setup], "cost": cost}
                )
    default = next(
        r for r in models if (r["setup"], r["mode"], r["gpu"], r["n_gpus"]) == (
            "MMLU", "rademacher", "H200", 1)
    )  # fmt: skip
    exact_enough = [
        mode
        for mode, row in measured["modes"].items()
        if mode != "less" and min(row["spearman_i_ref"], row["spearman_i_sta"]) >= EXACT_ENOUGH
    ]
    fastest = min(exact_enough, key=lambda mode: measured["modes"][mode]["seconds"])
    targets = {
        "default_mmlu_one_h200_gpu_hours": default["cost"]["gpu_hours"],
        "default_mmlu_one_h200_met": default["cost"]["gpu_hours"] <= 2.0,
        "fastest_exact_enough_mode": fastest,
        "fastest_exact_enough_x_floor": measured["modes"][fastest]["x_floor"],
        "cpu_within_1_5x_floor_met": measured["modes"][fastest]["x_floor"] <= 1.5,
    }
    text = report(measured, models, args)
    met = {True: "met", False: "NOT met"}
    text += (
        "\n\nTargets: default mode, MMLU, one H200: "
        f"{targets['default_mmlu_one_h200_gpu_hours']:.2f} GPU-h "
        f"(≤ 2: {met[targets['default_mmlu_one_h200_met']]}); fastest exact-enough mode here "
        f"({fastest}, Spearman ≥ {EXACT_ENOUGH}): {targets['fastest_exact_enough_x_floor']:.2f}× "
        f"the floor (≤ 1.5: {met[targets['cpu_within_1_5x_floor_met']]})"
    )
    result = {
        "benchmark": "influence_scale",
        "measured": measured,
        "model": {
            "llama3_8b": LLAMA3_8B,
            "gpus": GPUS,
            "mfu": MFU,
            "fp32_efficiency": FP32_EFFICIENCY,
            "bytes_per_sign": BYTES_PER_SIGN,
            "hbm_efficiency": HBM_EFFICIENCY,
            "host_gb": HOST_GB,
            "lora_r": LORA_R,
            "k": K,
            "factor_dim": FACTOR_DIM,
            "lora_parameters": lora_dim(),
            "chunk_memory_gb": args.chunk_memory_gb,
            "rows": models,
        },
        "targets": targets,
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(text)
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
