"""The GPU check (``scripts/gpu-check.sh``): what only a CUDA machine can show, in under five
minutes, one line per check: ``PASS``, ``FAIL`` or ``SKIP`` (with the reason), the check's name,
what it measured, and its seconds.

Checks (``--only a,b`` runs some):

* ``device``: torch, CUDA, the GPU's name and free memory.
* ``p-bits``: blocks of the projection P generated on the GPU equal the CPU's bit for bit
  (:mod:`rait.projection`), and their checksum (the CPU value is pinned in
  ``tests/test_projection.py``).
* ``p-rate``: P's generation rate on the GPU (signs/s), against the cost model of
  ``bench/influence_scale.py`` (``BYTES_PER_SIGN`` bytes of memory traffic a sign).
* ``influence``: ``rait influence``'s scores on the GPU, P generated there, against the same
  computation on the CPU, for the dense, factorised and exact modes (tiny random Llama + LoRA).
* ``train-bf16``: a tiny end-to-end ``rait run`` (world facts, tiny random Llama, Cor-RAIT) with
  bf16 training on the GPU: the run completes, the trainer ran in bf16, the loss is finite.
* ``vllm-*``: with vLLM importable, its engine against the HF engine on 20 prompts of the tiny
  model: option and continuation log-probabilities within 1e-3, greedy text equal, the same
  scores in reversed order, seeded samples repeatable, an answer that starts with a newline
  cut as the HF engine cuts it, two engines built one after the other in one process (the
  first closed), and a LoRA adapter against the merged HF model.
* ``ddp``: with two GPUs or more, a 2-process DDP training (``torchrun``) of the tiny model.

``--device cpu`` runs the checks that do not need CUDA on the CPU (the tests do), so the script
is exercised up to the point where CUDA is required. Exit status: 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOGPROB_TOLERANCE = 1e-3
N_PROMPTS = 20


class Skip(Exception):
    """A check that cannot run here (the message says why)."""


# --------------------------------------------------------------------------- fixtures
def tiny_model(folder: Path, seed: int = 0) -> Path:
    """A tiny random Llama (rait.models.build_tiny_model) saved as a Hugging Face folder."""
    from rait.models import build_tiny_model

    lm = build_tiny_model(seed=seed)
    lm.model.save_pretrained(folder, safe_serialization=True)
    lm.tokenizer.save_pretrained(folder)
    return folder


def prompts(n: int = N_PROMPTS) -> list[str]:
    """World-facts questions under the basic prompt: realistic prompts for the tiny model."""
    subjects = ["Peru", "Lyon", "Chile", "Morocco", "Ningbo", "Kenya", "Oslo", "Quito"]
    relations = ["What is the capital of {}?", "On which continent is {}?", "Where is {}?"]
    out = [relations[i % 3].format(subjects[i % 8]) for i in range(n)]
    return [f"Question: {q}\nAnswer:" for q in out]


def tiny_lora(model_dir: Path, folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """A rank-8 LoRA on the tiny model with random B (an adapter folder) and the merged model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    adapter, merged = folder / "adapter", folder / "merged"
    model.save_pretrained(adapter)
    model.merge_and_unload().save_pretrained(merged, safe_serialization=True)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(merged)
    return adapter, merged


# --------------------------------------------------------------------------- checks
def check_device(device: str, work: Path) -> str:
    import torch

    if device == "cpu":
        return f"torch {torch.__version__}, CPU ({torch.get_num_threads()} threads)"
    if not torch.cuda.is_available():
        raise Skip(f"torch {torch.__version__} sees no CUDA device")
    free, total = torch.cuda.mem_get_info()
    return (
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} × "
        f"{torch.cuda.get_device_name()}, {free / 2**30:.0f} of {total / 2**30:.0f} GiB free"
    )


def check_p_bits(device: str, work: Path) -> str:
    import torch

    from rait.projection import RademacherProjector, block_checksum

    compared = 0
    for seed, dim, k in ((0, 20_000, 8192), (7, 70_000, 1000), (2**40 + 3, 513, 64)):
        # the device's own block size (blocks differ by device, the rows they hold do not)
        here = RademacherProjector(dim, k, seed, device)
        cpu = RademacherProjector(dim, k, seed, "cpu")
        for b in sorted({0, 1, here.n_blocks - 1} & set(range(here.n_blocks))):
            block = here.block(b).cpu()
            first = b * here.rows_per_block
            if not torch.equal(block, cpu.rows(first, block.shape[0])):
                raise AssertionError(f"seed {seed}, rows from {first}: P on {device} differs")
            compared += block.numel()
    checksum = block_checksum(0, 0, 8192, device)
    if checksum != block_checksum(0, 0, 8192, "cpu"):
        raise AssertionError(f"block_checksum on {device} {checksum} differs from the CPU's")
    return f"{compared:,} entries equal to the CPU's; block_checksum(seed 0, block 0) = {checksum}"


def check_p_rate(device: str, work: Path) -> str:
    sys.path.insert(0, str(ROOT / "bench"))
    from influence_scale import BYTES_PER_SIGN

    from rait.projection import generation_rate

    rate = generation_rate(device, 8192, blocks=8)
    return (
        f"{rate:.3g} signs/s on {device}: {rate * BYTES_PER_SIGN / 1e12:.2f} TB/s at the cost "
        f"model's {BYTES_PER_SIGN:g} B/sign"
    )


def _influence_inputs(seed: int = 0):
    """The tiny model with a random-B LoRA, and 24 world-facts gradient samples."""
    import random

    import torch
    from peft import LoraConfig, get_peft_model

    from rait.data.sources import DataSource, load_source
    from rait.data.world_facts import WorldFactsConfig, write_world_facts
    from rait.influence import gradient_examples
    from rait.models import build_tiny_model

    folder = Path(tempfile.mkdtemp(prefix="rait-gpu-check-wf-"))
    write_world_facts(WorldFactsConfig(n_cities=60), folder)
    records = load_source(DataSource(format="world_facts", path=str(folder), split="train"))
    chosen = random.Random(seed).sample(records, 24)
    mu = {r.id: (1.0 if i % 3 == 0 else 0.0) for i, r in enumerate(chosen)}
    lm = build_tiny_model(seed=seed)
    model = get_peft_model(lm.model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    model.eval()
    return lm, model, gradient_examples(chosen, mu, lm.tokenizer, lm.use_chat_template)


def check_influence(device: str, work: Path) -> str:
    import copy

    from rait.gradients import PerSampleGradients
    from rait.influence import InfluenceSettings, compute_influence

    lm, model, examples = _influence_inputs()
    pad = lm.tokenizer.pad_token_id
    there = copy.deepcopy(model).to(device)
    worst = {}
    for mode in ("rademacher", "factorized", "none"):
        settings = InfluenceSettings(projection=mode, projection_dim=256, seed=3, batch_size=8)
        results = [
            compute_influence(PerSampleGradients(m), examples, settings, pad, d, log=lambda _: 0)
            for m, d in ((model, "cpu"), (there, device))
        ]
        for key in ("i_ref", "i_sta"):
            a, b = (getattr(r, key).double().cpu() for r in results)
            relative = float((a - b).abs().max() / a.abs().max().clamp(min=1e-30))
            worst[f"{mode} {key}"] = relative
            # fp32 sums of ~1e4 terms in another order: a relative error of ~√n · 6e-8 ≈ 1e-5
            if not relative <= 1e-4:
                raise AssertionError(f"{mode} {key}: {device} vs CPU differ by {relative:.2e}")
    top = max(worst, key=worst.get)
    return f"3 modes × I_ref, I_sta equal to the CPU's within {worst[top]:.1e} ({top} largest)"


def check_train_bf16(device: str, work: Path) -> str:
    import yaml

    for module in ("trl", "datasets"):
        try:
            __import__(module)
        except ImportError as exc:
            raise Skip(f"{module} is not importable ({exc}): pip install -e . first") from None
    from rait.pipeline import load_pipeline_config, run_pipeline

    model_dir = tiny_model(work / "tiny-train")
    train = {"epochs": 2, "batch_size": 4, "effective_batch_size": 4, "precision": "bf16"}
    config = {
        "run_dir": str(work / "run"),
        "model": {"name": str(model_dir), "device": device},
        "world_facts": {"task": "oeqa", "n_cities": 60},
        "data": {"format": "world_facts", "split": "train", "sample": 24},
        "shots": {"format": "world_facts", "split": "dev"},
        "tests": [
            {
                "name": "wf-id",
                "role": "id",
                "data": {"format": "world_facts", "split": "id_test", "sample": 8},
            }
        ],
        "methods": ["cor-rait"],
        "representations": None,
        "probe": {"n_samples": 2, "n_shots": 1, "backend": "hf"},
        "build": {"n_van": 8, "n_idk": 4, "tau_mu": 0.25},
        "train": train,
        "eval": {"max_new_tokens": 4, "batch_size": 4, "backend": "hf"},
    }
    path = work / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    summary = run_pipeline(load_pipeline_config(str(path)), log=lambda _: None)
    from rait.artifacts import TRAIN_SUMMARY_FILE

    trained = json.loads((work / "run" / "train" / "cor-rait" / TRAIN_SUMMARY_FILE).read_text())
    losses = [h["loss"] for h in trained.get("log_history", []) if "loss" in h]
    if trained.get("precision") != "bf16":
        raise AssertionError(f"the training ran in {trained.get('precision')!r}, not bf16")
    if not losses or not all(math.isfinite(x) for x in losses):
        raise AssertionError(f"training losses {losses} are not finite")
    rows = {(r["method"], r["test_set"]) for r in summary["rows"]}
    return f"{len(rows)} result rows, bf16 training, losses {losses[0]:.3f} → {losses[-1]:.3f}"


def _vllm_pair(work: Path, adapter: Path | None = None, merged: Path | None = None):
    """The HF engine (on the merged model when a LoRA is given) and the vLLM engine."""
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        raise Skip(f"vllm is not importable ({exc})") from None
    from rait.backends import load_engine
    from rait.engine import VllmConfig
    from rait.models import ModelConfig

    model_dir = work / "tiny-vllm"
    if not model_dir.exists():
        tiny_model(model_dir)
    # float32 on both: bf16 rounding alone would exceed the 1e-3 tolerance
    hf_cfg = ModelConfig(name=str(merged or model_dir), device="cuda", dtype="float32")
    hf = load_engine(hf_cfg, "hf", 8)
    adapter_dir = str(adapter) if adapter else None
    cfg = ModelConfig(name=str(model_dir), adapter=adapter_dir, dtype="float32")
    vllm_cfg = VllmConfig(gpu_memory_utilization=0.3, max_model_len=512)
    return hf, load_engine(cfg, "vllm", 8, vllm_cfg)


def _close(engine: Any) -> None:
    from rait.backends import close_engine

    close_engine(engine)


def _letters(engine) -> list[int]:
    return [engine.encode(f" {x}")[-1] for x in "ABCD"]


def _compare_scores(hf, vl, texts: list[str]) -> float:
    keys = [f"q{i}" for i in range(len(texts))]
    letters = [_letters(hf)] * len(texts)
    a = hf.candidate_logprobs(texts, keys, letters)
    b = vl.candidate_logprobs(texts, keys, letters)
    worst = max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))
    if not worst <= LOGPROB_TOLERANCE:
        raise AssertionError(f"option log-probabilities differ by {worst:.2e}")
    return worst


def check_vllm(device: str, work: Path) -> str:
    if device == "cpu":
        raise Skip("vLLM needs a CUDA GPU")
    texts = prompts()
    keys = [f"q{i}" for i in range(len(texts))]
    hf, vl = _vllm_pair(work)
    try:
        found = []
        option = _compare_scores(hf, vl, texts)
        found.append(f"options ≤ {option:.1e}")
        reversed_scores = vl.candidate_logprobs(texts[::-1], keys[::-1], [_letters(hf)] * 20)
        forward = vl.candidate_logprobs(texts, keys, [_letters(hf)] * 20)
        moved = max(
            abs(x - y) for ra, rb in zip(reversed_scores[::-1], forward) for x, y in zip(ra, rb)
        )
        if not moved <= LOGPROB_TOLERANCE:  # vLLM issue 42019: order-dependent scores
            raise AssertionError(f"vLLM's option scores move by {moved:.2e} with the order")
        found.append("order-independent")
        conts = [[" I am sure.", " I am unsure."]] * len(texts)
        a = hf.continuation_logprobs(texts, keys, conts)
        b = vl.continuation_logprobs(texts, keys, conts)
        worst = max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))
        if not worst <= LOGPROB_TOLERANCE:
            raise AssertionError(f"continuation log-probabilities differ by {worst:.2e}")
        found.append(f"continuations ≤ {worst:.1e}")
        greedy_hf = hf.sample(texts, keys, 1, 0.0, 16)
        greedy_vl = vl.sample(texts, keys, 1, 0.0, 16)
        same = sum(x[0].text == y[0].text for x, y in zip(greedy_hf, greedy_vl))
        if same != len(texts):
            raise AssertionError(f"greedy answers equal on {same} of {len(texts)} prompts")
        found.append("greedy equal")
        seeds = [[100 + i + k for k in range(4)] for i in range(len(texts))]
        one = vl.sample(texts, keys, 4, 1.0, 16, seeds)
        two = vl.sample(texts, keys, 4, 1.0, 16, seeds)
        if [[c.text for c in r] for r in one] != [[c.text for c in r] for r in two]:
            raise AssertionError("seeded samples differ between two identical calls")
        found.append("seeded samples repeatable")
        found.append(_leading_newline(hf, vl))
    finally:
        _close(vl)
    return ", ".join(found)


def _leading_newline(hf, vl) -> str:
    """A prompt whose greedy answer starts with a newline: both engines keep the first
    non-empty line (searched among questions; the tiny model's choice is arbitrary)."""
    candidates = [f"Question: {w}?\nAnswer:" for w in ("x", "y", "z", "q", "Peru", "Oslo")] + [
        f"Question: item {i}\nAnswer:{' ' * (i % 3)}" for i in range(200)
    ]
    keys = [f"n{i}" for i in range(len(candidates))]
    newline = hf.encode("\n")[-1]
    firsts = hf.sample(candidates, keys, 1, 0.0, 1, stop_at_first_line=False)
    starting = [i for i, r in enumerate(firsts) if r[0].token_ids[:1] == [newline]]
    if not starting:
        return "no prompt found whose answer starts with a newline (not checked)"
    picked = [candidates[i] for i in starting[:5]]
    keys = keys[: len(picked)]
    a = hf.sample(picked, keys, 1, 0.0, 16)
    b = vl.sample(picked, keys, 1, 0.0, 16)
    for x, y in zip(a, b):
        if (x[0].text, x[0].token_ids) != (y[0].text, y[0].token_ids):
            raise AssertionError(f"leading newline: HF {x[0].text!r}, vLLM {y[0].text!r}")
    return f"leading-newline answers cut alike ({len(picked)})"


def check_vllm_two_engines(device: str, work: Path) -> str:
    if device == "cpu":
        raise Skip("vLLM needs a CUDA GPU")
    import torch

    hf, first = _vllm_pair(work)
    _close(first)
    _close(hf)
    free_after_close, _ = torch.cuda.mem_get_info()
    hf, second = _vllm_pair(work)
    try:
        _compare_scores(hf, second, prompts(4))
    finally:
        _close(second)
    return f"second engine built and scored; {free_after_close / 2**30:.0f} GiB free between"


def check_vllm_lora(device: str, work: Path) -> str:
    if device == "cpu":
        raise Skip("vLLM needs a CUDA GPU")
    model_dir = work / "tiny-vllm"
    if not model_dir.exists():
        tiny_model(model_dir)
    adapter, merged = tiny_lora(model_dir, work / "lora")
    hf, vl = _vllm_pair(work, adapter, merged)
    try:
        worst = _compare_scores(hf, vl, prompts())
    finally:
        _close(vl)
    return f"LoRA r 8 (vLLM max_lora_rank 8) against the merged model: options ≤ {worst:.1e}"


def check_ddp(device: str, work: Path) -> str:
    import torch

    if device == "cpu" or torch.cuda.device_count() < 2:
        raise Skip("needs two CUDA GPUs")
    model_dir = tiny_model(work / "tiny-ddp")
    data = work / "ddp.jsonl"
    rows = [
        {
            "id": f"s{i}",
            "prompt": [{"role": "user", "content": f"Question {i}?"}],
            "completion": [{"role": "assistant", "content": f"Answer {i}."}],
            "weight": 1.0,
        }
        for i in range(16)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [
        sys.executable,  # torchrun of this interpreter, activated or not
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "rait",
        "train",
        "--data",
        str(data),
        "--model",
        str(model_dir),
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--effective-batch-size",
        "4",
        "--out",
        str(work / "ddp-out"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    if done.returncode != 0:
        raise AssertionError(f"torchrun failed: {done.stderr.strip().splitlines()[-1:]}")
    return "2 processes trained one epoch"


CHECKS = {
    "device": check_device,
    "p-bits": check_p_bits,
    "p-rate": check_p_rate,
    "influence": check_influence,
    "train-bf16": check_train_bf16,
    "vllm": check_vllm,
    "vllm-two-engines": check_vllm_two_engines,
    "vllm-lora": check_vllm_lora,
    "ddp": check_ddp,
}
#: checks that need CUDA whatever ``--device`` says
CUDA_ONLY = {"vllm", "vllm-two-engines", "vllm-lora", "ddp"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--only", help=f"comma-separated checks among {', '.join(CHECKS)}")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        parser.error(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(CHECKS)}")
    import torch

    no_cuda = args.device != "cpu" and not torch.cuda.is_available()
    failed = 0
    work = Path(tempfile.mkdtemp(prefix="rait-gpu-check-"))
    pending = list(names)

    def out_of_time(signum, frame):  # `timeout` in gpu-check.sh: say what did not run
        for name in pending:
            print(f"FAIL {name}: out of time (the script's limit), not finished", flush=True)
        os._exit(1)

    signal.signal(signal.SIGTERM, out_of_time)
    for name in names:
        started = time.perf_counter()
        try:
            if no_cuda and name != "device":
                raise Skip("no CUDA device (run with --device cpu for the CPU part)")
            (work / name).mkdir(parents=True, exist_ok=True)
            detail = CHECKS[name](args.device, work / name)
            status = "PASS"
        except Skip as exc:
            status, detail = "SKIP", str(exc)
        except Exception as exc:  # a check's failure is its line, the others still run
            status, detail = "FAIL", f"{type(exc).__name__}: {exc}".splitlines()[0]
            failed += 1
        pending.remove(name)
        print(
            f"{status} {name}: {detail} ({time.perf_counter() - started:.1f} s)",
            flush=True,
        )
    shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # one line per check, no progress bars
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.simplefilter("ignore", FutureWarning)
    sys.exit(main())
