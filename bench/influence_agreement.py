"""Benchmark: how far GRAIT's influence scores move with the feature mode, and what each costs.

On a finished probe and a warm-up LoRA checkpoint (e.g. the demo's: ``runs/demo/probe`` and
``runs/demo/influence/warmup/checkpoints/checkpoint-N``), the refusal-target gradients of every
probed question are turned into I_ref and I_sta (docs/methods.md §5) with

* ``projection: none``: the exact scores (two passes over the samples), the reference;
* ``projection: rademacher``: LESS's dense Rademacher projection to k = 8192 (the default);
* ``projection: factorized``: LoGra's per-layer factorised projection, at each ``--factor-dim``;

all normalised, SGD gradients, seed 0, as ``rait influence`` computes them
(:func:`rait.influence.compute_influence`, one process). For each approximate mode it reports
Spearman's ρ of I_ref and of I_sta against the exact ones (over every question, and over D_idk,
the pool GRAIT selects from), the overlap of GRAIT's N_idk selection with the exact scores'
(the same selection function as ``rait build --method grait``, at the demo's ``build.n_idk`` and
``build.n_van``, seed and ties included) and the seconds each mode took.

Run:  python bench/influence_agreement.py --probe DIR --warmup CKPT  [--factor-dim 16 64]
Writes bench/results/influence_agreement.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def demo_build_sizes() -> tuple[int, int]:
    """``build.n_van`` and ``build.n_idk`` of configs/demo.yaml."""
    import yaml

    build = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())["build"]
    return int(build["n_van"]), int(build["n_idk"])


def enter_run_root(probe: Path) -> None:
    """Work from the folder the probe's relative data path is relative to (a run directory's
    parent: the probe records ``runs/demo/data``)."""
    from rait.probe import probe_config_of

    data = probe_config_of(probe).data.path
    if not data or Path(data).is_absolute() or Path(data).exists():
        return
    for parent in probe.resolve().parents:
        if (parent / data).exists():
            os.chdir(parent)
            return
    raise SystemExit(f"cannot find the probe's data {data!r} above {probe}")


def grait_idk_selection(candidates, result, n_van: int, n_idk: int, tau_mu: float, refusal: str):
    """The ids GRAIT's build selects into D_idk^sel from ``result``'s scores."""
    from rait.methods.base import BuildContext, Sizes, Targets
    from rait.methods.grait import select_grait

    scores = dict(zip(result.ids, zip(result.i_ref.tolist(), result.i_sta.tolist(), strict=True)))
    scored = [replace(c, i_ref=scores[c.id][0], i_sta=scores[c.id][1]) for c in candidates]
    ctx = BuildContext(Sizes(n_van, n_idk), Targets(refusal), tau_mu=tau_mu, seed=0)
    return {p.candidate.id for p in select_grait(scored, ctx).picks if p.kind == "idk"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probe", required=True, help="the probe's output folder")
    parser.add_argument("--warmup", required=True, help="the warm-up LoRA checkpoint")
    parser.add_argument("--factor-dim", dest="factor_dims", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--k", type=int, default=8192, help="the dense projection's k")
    parser.add_argument("--tau-mu", dest="tau_mu", type=float, default=0.5)
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=16)
    parser.add_argument("--chunk-memory-gb", dest="chunk_memory_gb", type=float, default=2.0)
    parser.add_argument("--limit", type=int, help="only the first N probed questions (a smoke run)")
    parser.add_argument(
        "--out", default=str(ROOT / "bench" / "results" / "influence_agreement.json")
    )
    args = parser.parse_args()
    import torch
    from scipy.stats import spearmanr

    from rait.influence import (
        InfluenceSettings,
        compute_influence,
        gradient_examples,
        load_warmup_model,
    )
    from rait.models import resolve_device
    from rait.probe import load_probe
    from rait.prompts import REFUSAL_ANSWER

    out = Path(args.out).resolve()
    warmup = str(Path(args.warmup).resolve())
    probe = Path(args.probe).resolve()
    enter_run_root(probe)
    n_van, n_idk = demo_build_sizes()
    probe_cfg, records, task, knowledge, candidates = load_probe(probe)
    lm, _, engine = load_warmup_model(probe_cfg.model, warmup, "sgd")
    device = resolve_device(probe_cfg.model.device)
    mu_by_id = {k: float(row["mu"]) for k, row in knowledge.items()}
    if args.limit:
        mu_by_id = dict(list(mu_by_id.items())[: args.limit])
        candidates = [c for c in candidates if c.id in mu_by_id]
    examples = gradient_examples(records, mu_by_id, lm.tokenizer, lm.use_chat_template, args.tau_mu)
    pad = lm.tokenizer.pad_token_id
    pad = lm.tokenizer.eos_token_id if pad is None else pad
    modes = [("exact (projection: none)", InfluenceSettings("none"))]
    modes.append((f"dense Rademacher, k {args.k}", InfluenceSettings("rademacher", args.k)))
    for f in args.factor_dims:
        modes.append((f"factorized, factor_dim {f}", InfluenceSettings("factorized", factor_dim=f)))
    results, rows = {}, []
    for label, settings in modes:
        settings = replace(
            settings, batch_size=args.batch_size, chunk_memory_gb=args.chunk_memory_gb
        )
        print(f"running {label} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        result = compute_influence(engine, examples, settings, pad, device, log=lambda _: None)
        results[label] = (result, time.perf_counter() - started)
    exact, _ = results[modes[0][0]]
    idk = torch.tensor([s == "idk" for s in exact.splits])
    refusal = REFUSAL_ANSWER[task]
    chosen = grait_idk_selection(candidates, exact, n_van, n_idk, args.tau_mu, refusal)
    for label, (result, seconds) in results.items():
        assert result.ids == exact.ids
        row = {
            "mode": label,
            "feature_dim": result.feature_dim,
            "passes": result.passes,
            "seconds": round(seconds, 1),
        }
        for key in ("i_ref", "i_sta"):
            mine, ref = getattr(result, key).double(), getattr(exact, key).double()
            row[f"spearman_{key}"] = round(float(spearmanr(mine, ref)[0]), 4)
            row[f"spearman_{key}_idk"] = round(float(spearmanr(mine[idk], ref[idk])[0]), 4)
        selected = grait_idk_selection(candidates, result, n_van, n_idk, args.tau_mu, refusal)
        row["n_idk_overlap"] = len(selected & chosen)
        row["n_idk_overlap_share"] = round(len(selected & chosen) / max(len(chosen), 1), 4)
        rows.append(row)
    report = {
        "benchmark": "influence_agreement",
        "probe": str(probe),
        "warmup": warmup,
        "model": probe_cfg.model.name,
        "questions": len(exact.ids),
        "n_idk_pool": int(idk.sum()),
        "lora_parameters": engine.dim,
        "n_van": n_van,
        "n_idk": n_idk,
        "tau_mu": args.tau_mu,
        "batch_size": args.batch_size,
        "rows": rows,
        "ths": "not measured: it needs a training and an evaluation per selection",
        "machine": {
            "platform": platform.platform(),
            "device": str(device),
            "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "torch": torch.__version__,
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\n{len(exact.ids)} questions ({int(idk.sum())} in D_idk), {probe_cfg.model.name}, "
        f"{engine.dim:,} LoRA parameters, GRAIT N_idk {n_idk}, {torch.get_num_threads()} "
        f"threads on {device}\n"
    )
    print(
        "| mode | features | passes | ρ I_ref | ρ I_sta | ρ I_ref (D_idk) | ρ I_sta (D_idk) | "
        f"N_idk overlap (of {len(chosen)}) | seconds |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        features = f"{r['feature_dim']:,}" if r["feature_dim"] else f"{engine.dim:,} (exact)"
        print(
            f"| {r['mode']} | {features} | {r['passes']} | {r['spearman_i_ref']:.4f} | "
            f"{r['spearman_i_sta']:.4f} | {r['spearman_i_ref_idk']:.4f} | "
            f"{r['spearman_i_sta_idk']:.4f} | {r['n_idk_overlap']} | {r['seconds']} |"
        )
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
