"""Benchmark: `rait influence` against the LESS-style per-sample loop, same numbers.

Both paths compute GRAIT's I_ref and I_sta from the refusal-target gradients of the same
samples at the same LoRA, with the same seeded dense Rademacher projection (k = 8192, scaled
1/√k) and per-sample L2 normalisation (docs/methods.md §5 defaults).

* **Baseline, the LESS loop** (``collect_grads`` in LESS): one sample at a time, forward with
  the model's own loss (``model(**batch).loss``, full logits), ``backward()``, flatten the LoRA
  gradients, and every 16 samples (LESS's ``project_interval``) project the 16 stacked
  gradients, generating the matrix again as trak's projector does; then normalise, take the
  means and the inner products.
* **rait influence** (:func:`rait.influence.compute_influence`): per-sample gradients of a whole
  batch from one backward pass (hooks on the LoRA layers, logits only at answer positions),
  projected a chunk of samples at a time, so the projection matrix is generated once per chunk
  instead of once per 16 samples.
  Also timed: the two-pass modes (``normalize: false``, where no sample is projected, and
  ``projection: none``, the exact scores).

Model: the offline default SmolLM2-135M-Instruct (float32, CPU) with a LoRA on every linear
layer; its B matrices are drawn with a fixed seed (a stand-in for a warmed-up adapter: speed
does not depend on the values, and A's gradients are zero at B = 0). Samples: world-facts
training questions under the REFUSE prompt with the refusal target; a seeded quarter are in
D_ik (the split only decides which samples enter which mean). Each path runs in its own
process, which reports its peak resident memory.

Run:  .venv/bin/python bench/influence_speed.py  [--n 256] [--lora-r 8] [--k 8192]
Writes bench/results/influence_speed.json and prints a table. Target: ≥ 5× the baseline.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT_INTERVAL = 16  # LESS collect_grads


def setup(n: int, lora_r: int, seed: int):
    import torch
    from peft import LoraConfig, get_peft_model

    from rait.data.sources import DataSource, load_source
    from rait.data.world_facts import WorldFactsConfig, write_world_facts
    from rait.influence import gradient_examples
    from rait.models import ModelConfig, load_model

    folder = Path(tempfile.mkdtemp(prefix="rait-bench-wf-"))
    write_world_facts(WorldFactsConfig(), folder)
    records = load_source(DataSource(format="world_facts", path=str(folder), split="train"))
    rng = random.Random(seed)
    chosen = rng.sample(records, n)
    mu = {r.id: (1.0 if rng.random() < 0.25 else 0.0) for r in chosen}
    lm = load_model(ModelConfig())
    model = get_peft_model(
        lm.model,
        LoraConfig(r=lora_r, lora_alpha=16, lora_dropout=0.1, target_modules="all-linear"),
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.01)
    model.eval()
    examples = gradient_examples(chosen, mu, lm.tokenizer, lm.use_chat_template)
    return lm, model, examples


def scores_from_features(features, examples):
    import torch

    phi = features / features.norm(dim=1, keepdim=True)
    idk = torch.tensor([e.split == "idk" for e in examples])
    mean_idk, mean_ik = phi[idk].mean(0), phi[~idk].mean(0)
    return phi @ mean_idk, phi @ (mean_idk - mean_ik)


def less_loop(model, examples, pad_id, k, seed):
    """LESS's collect_grads: batch size 1, backward, flatten; project every 16 samples."""
    import torch

    from rait.gradients import collate
    from rait.projection import RademacherProjector

    params = [p for _, p in model.named_parameters() if p.requires_grad]
    projector = RademacherProjector(sum(p.numel() for p in params), k, seed)
    features, pending = [], []
    for ex in examples:
        model.zero_grad(set_to_none=True)
        batch = collate([ex.features], pad_id, "cpu")
        labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
        model(  # LESS: the model's own loss over the answer labels
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels
        ).loss.backward()
        pending.append(torch.cat([p.grad.flatten() for p in params]))
        if len(pending) == PROJECT_INTERVAL:
            projector._cached = None  # a new call generates the matrix again, as trak's does
            features.append(projector.project(torch.stack(pending)))
            pending = []
    if pending:
        projector._cached = None
        features.append(projector.project(torch.stack(pending)))
    return scores_from_features(torch.cat(features), examples)


def worker(args) -> None:
    import torch

    from rait.gradients import PerSampleGradients
    from rait.influence import InfluenceSettings, compute_influence

    torch.manual_seed(0)
    lm, model, examples = setup(args.n, args.lora_r, args.seed)
    pad = lm.tokenizer.pad_token_id
    dim = sum(p.numel() for p in model.parameters() if p.requires_grad)
    started = time.perf_counter()
    if args.worker == "less":
        i_ref, i_sta = less_loop(model, examples, pad, args.k, args.seed)
    else:
        projection, normalize = {
            "fast": ("rademacher", True),
            "fast-unnormalised": ("rademacher", False),
            "fast-exact": ("none", True),
        }[args.worker]
        settings = InfluenceSettings(
            projection, args.k, normalize, args.seed, args.batch_size, args.chunk_memory_gb
        )
        result = compute_influence(
            PerSampleGradients(model), examples, settings, pad, log=lambda _: None
        )
        i_ref, i_sta = result.i_ref, result.i_sta
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB → MiB (Linux)
    torch.save({"i_ref": i_ref, "i_sta": i_sta}, args.scores)
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak, "lora_parameters": dim}))


def run_worker(name: str, args, scores: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--scores", str(scores)]
    for flag in ("n", "lora_r", "k", "seed", "batch_size", "chunk_memory_gb"):
        cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--lora-r", dest="lora_r", type=int, default=8)
    parser.add_argument("--k", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=16)
    parser.add_argument("--chunk-memory-gb", dest="chunk_memory_gb", type=float, default=3.0)
    parser.add_argument("--skip-modes", action="store_true", help="time only baseline and fast")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--scores", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "influence_speed.json"))
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return 0
    import torch

    tmp = Path(tempfile.mkdtemp(prefix="rait-bench-influence-"))
    names = ["less", "fast"] + ([] if args.skip_modes else ["fast-unnormalised", "fast-exact"])
    runs = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        runs[name] = run_worker(name, args, tmp / f"{name}.pt")
    base = torch.load(tmp / "less.pt")
    fast = torch.load(tmp / "fast.pt")
    agreement = {
        key: float((fast[key].double() - base[key].double()).abs().max() / base[key].abs().max())
        for key in ("i_ref", "i_sta")
    }
    baseline = runs["less"]["seconds"]
    rows = []
    labels = {
        "less": "LESS loop (batch 1, backward, project every 16)",
        "fast": "rait influence (projected, normalised: default)",
        "fast-unnormalised": "rait influence (projected, not normalised: 2 passes)",
        "fast-exact": "rait influence (exact, normalised: 2 passes)",
    }
    for name, run in runs.items():
        rows.append(
            {
                "path": labels[name],
                "seconds": round(run["seconds"], 1),
                "samples_per_second": round(args.n / run["seconds"], 2),
                "speedup_vs_less": round(baseline / run["seconds"], 2),
                "peak_rss_mib": round(run["peak_rss_mib"]),
            }
        )
    result = {
        "benchmark": "influence_speed",
        "n": args.n,
        "lora_r": args.lora_r,
        "lora_parameters": runs["less"]["lora_parameters"],
        "k": args.k,
        "batch_size": args.batch_size,
        "chunk_memory_gb": args.chunk_memory_gb,
        "rows": rows,
        "max_relative_difference_fast_vs_less": agreement,
        "target": "rait influence ≥ 5× the LESS loop",
        "met": baseline / runs["fast"]["seconds"] >= 5.0,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"\n{args.n} world-facts samples, SmolLM2-135M-Instruct, LoRA r {args.lora_r} "
        f"({result['lora_parameters']:,} parameters), k {args.k}, CPU "
        f"{torch.get_num_threads()} threads\n"
    )
    print("| path | seconds | samples/s | × LESS loop | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['path']} | {row['seconds']} | {row['samples_per_second']} | "
            f"{row['speedup_vs_less']} | {row['peak_rss_mib']} |"
        )
    print(
        f"\nsame numbers: max |fast − LESS| / max |LESS| = {agreement['i_ref']:.1e} (I_ref), "
        f"{agreement['i_sta']:.1e} (I_sta); target ≥ 5×: {'met' if result['met'] else 'NOT met'}"
    )
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
