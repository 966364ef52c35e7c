"""Stage 1, the knowledge probe: correctness µ and certainty σ of every question
(docs/methods.md §2).

**MCQA.** A 5-shot prompt (GRAIT Table 4; shots from another split), one forward pass, the
log-probabilities of the option-letter tokens at the answer position, softmax over the options:
``p_i = exp(l_i) / Σ_j exp(l_j)``. ``µ = p(gold)``, ``σ = Σ_i p_i log p_i`` (negative entropy,
in ``[-log |O|, 0]``; higher = more certain).

**OEQA.** A 3-shot prompt (GRAIT Table 5), N samples at temperature 1.0 (no top-k/top-p), the
answer is the first line. ``µ = (1/N) Σ_k correct(a_k)`` (``contains`` or ``em``);
``σ = 1/(N(N-1)) Σ_{j≠k} cos(e_j, e_k)`` over ``all-MiniLM-L6-v2`` embeddings.

**R-Tuning** (optional): one greedy answer, certain if correct; **R-Tuning-U** (optional): k
samples at T = 0.7, ``u = -Σ_a f_a log f_a`` over the answers' frequencies (OEQA answers are
compared after TriviaQA normalisation); the 50% lowest-u questions are certain
(:func:`rait.methods.rtuning.rtuning_u_certain`).

Output: ``knowledge.jsonl``, one row per question (fields in docs/probe.md), written batch by
batch; ``summary.json``. A killed probe resumes where it stopped; batches are cut the same
way on every run, so the resumed file equals an uninterrupted one (greedy/MCQA exactly,
sampling too as every sample has its own seeded generator).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rait.artifacts import KNOWLEDGE_FILE, PROBE_SUMMARY_FILE, check_ids, read_knowledge
from rait.backends import backend_names, close_engine, load_stage_engine, resolve_backend
from rait.cliargs import option
from rait.config import build_config, config_to_dict
from rait.data.records import QARecord, task_of
from rait.data.sources import DataSource, load_source
from rait.distributed import Processes, Shard, merge_shards, remove_shards, run_shard
from rait.encoders import DEFAULT_ENCODER, load_encoder, mean_pairwise_cosine
from rait.engine import VllmConfig
from rait.errors import ConfigError, DataError, Location, ModelError
from rait.fileio import read_json, write_json
from rait.matching import MATCH_MODES, first_line, is_correct_open, normalize_answer
from rait.methods.base import DEFAULT_TAU_MU, Candidate
from rait.models import ModelConfig, render_prompt, resolve_device
from rait.prompts import SHOTS, knowledge_query_messages
from rait.rundir import MANIFEST, ResumableJsonl, Stage


@dataclass
class ProbeConfig:
    """Settings of ``rait probe``.

    ``batch_size``: questions per batch; by default 8, except MCQA with the HF backend on a
    CPU: 1 (scoring ~1,000-token prompts already fills the cores, and padding a batch to its
    longest question then costs more than batching saves; measured in docs/probe.md).
    ``data``: the questions to probe; ``shots``: the pool the few-shot examples come from
    (another split: MMLU dev/val, world-facts dev); ``n_shots``: default 5 (MCQA) / 3 (OEQA).
    Shots are taken in pool order from the same ``domain`` (else ``subject``) as the question,
    then from the rest of the pool.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataSource = field(default_factory=DataSource)
    shots: DataSource | None = None
    n_shots: int | None = None
    n_samples: int = option(10, help="OEQA samples per question (N)")
    temperature: float = 1.0
    max_new_tokens: int = 32
    match: str = "contains"
    encoder: str = DEFAULT_ENCODER
    rtuning: bool = True
    rtuning_u: bool = option(False, help="also draw R-Tuning-U's samples (k at T = 0.7)")
    rtuning_u_samples: int = 10
    rtuning_u_temperature: float = 0.7
    backend: str = option("auto", help="the inference engine", choices=backend_names)
    batch_size: int | None = option(
        None, help="questions per batch (default 8; 1 for MCQA on a CPU)"
    )
    seed: int = option(0, help="seed of every sample")
    vllm: VllmConfig = field(default_factory=VllmConfig)

    #: keys of earlier versions, still read (configs, the stage.json of older runs)
    RENAMED: ClassVar[dict[str, str]] = {
        "vllm_tensor_parallel_size": "vllm.tensor_parallel_size",
        "vllm_gpu_memory_utilization": "vllm.gpu_memory_utilization",
    }

    def validate(self) -> None:
        checks = [
            (
                self.n_samples >= 2,
                f"n_samples must be >= 2 (σ compares samples), got {self.n_samples}",
            ),
            (self.temperature > 0, f"temperature must be > 0, got {self.temperature}"),
            (
                self.max_new_tokens > 0,
                f"max_new_tokens must be positive, got {self.max_new_tokens}",
            ),
            (
                self.match in MATCH_MODES,
                f"match must be one of {', '.join(MATCH_MODES)}, got {self.match!r}",
            ),
            (
                self.batch_size is None or self.batch_size > 0,
                f"batch_size must be positive, got {self.batch_size}",
            ),
            (
                self.n_shots is None or self.n_shots >= 0,
                f"n_shots must be >= 0, got {self.n_shots}",
            ),
            (
                self.rtuning_u_samples >= 2,
                f"rtuning_u_samples must be >= 2, got {self.rtuning_u_samples}",
            ),
            (self.rtuning_u_temperature > 0, "rtuning_u_temperature must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if resolve_backend(self.backend) == "vllm":  # before the model loads, not at sampling
            from rait.backends.vllm import MAX_TEMPERATURE

            for name in ("temperature", "rtuning_u_temperature"):
                if getattr(self, name) > MAX_TEMPERATURE:
                    raise ConfigError(
                        f"{name} must be <= {MAX_TEMPERATURE:g} with the vLLM backend (vLLM's "
                        f"limit), got {getattr(self, name)}"
                    )


# --------------------------------------------------------------------------- helpers
def row_seed(seed: int, record_id: str, purpose: str, k: int = 0) -> int:
    """A stable 63-bit seed for one sample of one question."""
    digest = hashlib.sha256(f"{seed}\x00{record_id}\x00{purpose}\x00{k}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def select_shots(record: QARecord, pool: Sequence[QARecord], k: int) -> list[QARecord]:
    """``k`` shots for ``record``: pool order, same domain (else subject) first, never the
    question itself, then the rest of the pool."""
    if k == 0:
        return []
    usable = [s for s in pool if s.id != record.id and s.question != record.question]
    if record.domain and any(s.domain == record.domain for s in usable):
        preferred = [s for s in usable if s.domain == record.domain]
    elif record.subject:
        preferred = [s for s in usable if s.subject == record.subject]
    else:
        preferred = []
    chosen = preferred[:k]
    if len(chosen) < k:
        taken = {s.id for s in chosen}
        chosen += [s for s in usable if s.id not in taken][: k - len(chosen)]
    return chosen


def frequency_entropy(answers: Iterable[str]) -> float:
    """R-Tuning-U's uncertainty: the entropy of the answers' empirical frequencies."""
    counts = Counter(answers)
    total = sum(counts.values())
    return -sum((c / total) * math.log(c / total) for c in counts.values())


def option_token_ids(engine: Any, prompt: str, letters: Sequence[str], chat: bool) -> list[int]:
    """The token of each option letter as it follows ``prompt``.

    The shots show how an answer follows a prompt: right after the assistant header on a chat
    model ("A"), after "Answer:" and a space on a base model (" A"). The token is read off the
    tokenisation of prompt + answer, so "A" vs " A" is decided by the tokenizer itself.
    """
    base = engine.encode(prompt)
    ids = []
    for letter in letters:
        text = letter if chat else f" {letter}"
        full = engine.encode(prompt + text)
        if full[: len(base)] == base and len(full) == len(base) + 1:
            ids.append(full[-1])
            continue
        alone = engine.encode(text)
        if len(alone) != 1:
            raise ModelError(
                f"option letter {text!r} is not a single token for this tokenizer; "
                "MCQA probing needs one token per option letter"
            )
        ids.append(alone[0])
    if len(set(ids)) != len(ids):
        raise ModelError(f"option letters {list(letters)} share tokens {ids}")
    return ids


def softmax(logps: Sequence[float]) -> list[float]:
    """Probabilities renormalised over the given log-probabilities (max subtracted)."""
    top = max(logps)
    exps = [math.exp(x - top) for x in logps]
    total = sum(exps)
    return [e / total for e in exps]


# --------------------------------------------------------------------------- probing
class Prober:
    """Probes batches of questions of one task with an engine (HF or vLLM)."""

    def __init__(self, cfg: ProbeConfig, engine: Any, chat: bool, encoder: Any = None):
        self.cfg = cfg
        self.engine = engine
        self.chat = chat
        self.encoder = encoder
        self._option_ids: dict[int, list[int]] = {}

    def render(self, record: QARecord, shots: Sequence[QARecord]) -> str:
        messages = knowledge_query_messages(record, shots)
        return render_prompt(self.engine.tokenizer, messages, self.chat)

    def probe_mcqa(self, records: Sequence[QARecord], prompts: Sequence[str]) -> list[dict]:
        import torch

        cfg = self.cfg
        keys = [r.id for r in records]
        candidates = []
        for record, prompt in zip(records, prompts):
            n = len(record.option_letters)
            if n not in self._option_ids:
                self._option_ids[n] = option_token_ids(
                    self.engine, prompt, record.option_letters, self.chat
                )
            candidates.append(self._option_ids[n])
        logps = self.engine.candidate_logprobs(prompts, keys, candidates)
        rows = []
        for record, option_logps in zip(records, logps):
            probs = softmax(option_logps)
            assert record.gold is not None
            row: dict[str, Any] = {
                "id": record.id,
                "task": "mcqa",
                "mu": probs[record.gold],
                "sigma": sum(p * math.log(p) for p in probs if p > 0),
                "option_probs": probs,
                "letter_mass": math.exp(max(option_logps))
                * sum(math.exp(x - max(option_logps)) for x in option_logps),
                "gold": record.gold,
            }
            letters = record.option_letters
            if cfg.rtuning:
                best = max(range(len(probs)), key=lambda i: probs[i])
                row["greedy_answer"] = letters[best]
                row["greedy_correct"] = best == record.gold
            if cfg.rtuning_u:
                tempered = torch.softmax(
                    torch.tensor(option_logps, dtype=torch.float64) / cfg.rtuning_u_temperature,
                    dim=0,
                )
                generator = torch.Generator().manual_seed(row_seed(cfg.seed, record.id, "u"))
                draws = torch.multinomial(
                    tempered, cfg.rtuning_u_samples, replacement=True, generator=generator
                ).tolist()
                answers = [letters[i] for i in draws]
                row["rtuning_u_answers"] = answers
                row["rtuning_u_entropy"] = frequency_entropy(answers)
            rows.append(row)
        return rows

    def probe_oeqa(self, records: Sequence[QARecord], prompts: Sequence[str]) -> list[dict]:
        cfg = self.cfg
        keys = [r.id for r in records]
        seeds = [
            [row_seed(cfg.seed, r.id, "knowledge", k) for k in range(cfg.n_samples)]
            for r in records
        ]
        samples = self.engine.sample(
            prompts, keys, cfg.n_samples, cfg.temperature, cfg.max_new_tokens, seeds
        )
        answers = [[first_line(c.text) for c in completions] for completions in samples]
        flat = [a for group in answers for a in group]
        embeddings = self.encoder.encode(flat, convert_to_tensor=True, show_progress_bar=False)
        rows = []
        for i, record in enumerate(records):
            aliases = record.answers or ()
            correct = [is_correct_open(a, aliases, cfg.match) for a in answers[i]]
            block = embeddings[i * cfg.n_samples : (i + 1) * cfg.n_samples]
            rows.append(
                {
                    "id": record.id,
                    "task": "oeqa",
                    "mu": sum(correct) / len(correct),
                    "sigma": mean_pairwise_cosine(block),
                    "answers": answers[i],
                    "correct": correct,
                }
            )
        if cfg.rtuning:
            greedy = self.engine.sample(prompts, keys, 1, 0.0, cfg.max_new_tokens)
            for row, record, completions in zip(rows, records, greedy):
                answer = first_line(completions[0].text)
                row["greedy_answer"] = answer
                row["greedy_correct"] = is_correct_open(answer, record.answers or (), cfg.match)
        if cfg.rtuning_u:
            seeds_u = [
                [row_seed(cfg.seed, r.id, "u", k) for k in range(cfg.rtuning_u_samples)]
                for r in records
            ]
            drawn = self.engine.sample(
                prompts,
                keys,
                cfg.rtuning_u_samples,
                cfg.rtuning_u_temperature,
                cfg.max_new_tokens,
                seeds_u,
            )
            for row, completions in zip(rows, drawn):
                u_answers = [first_line(c.text) for c in completions]
                row["rtuning_u_answers"] = u_answers
                row["rtuning_u_entropy"] = frequency_entropy(normalize_answer(a) for a in u_answers)
        return rows


def default_batch_size(cfg: ProbeConfig, task: str, backend: str) -> int:
    """``cfg.batch_size``, or the default described in :class:`ProbeConfig`."""
    if cfg.batch_size is not None:
        return cfg.batch_size
    if task == "mcqa" and backend == "hf":
        return 1 if resolve_device(cfg.model.device) == "cpu" else 8
    return 8


def _text_length(record: QARecord) -> int:
    return len(record.question) + sum(len(c) for c in record.choices or ())


def _grouped_batches(
    records: Sequence[QARecord], shots_of: dict[str, list[QARecord]], batch_size: int
) -> list[list[QARecord]]:
    """Batches of questions sharing their shots (so their prompts share a prefix), in a
    fixed order: groups by first appearance, members by text length (questions of similar
    length share a batch, so little padding is computed), batches cut the same way on every
    run."""
    groups: dict[tuple[str, ...], list[QARecord]] = defaultdict(list)
    for record in records:
        groups[tuple(s.id for s in shots_of[record.id])].append(record)
    batches = []
    for members in groups.values():
        members = sorted(members, key=_text_length)  # stable: ties keep file order
        for start in range(0, len(members), batch_size):
            batches.append(members[start : start + batch_size])
    return batches


def load_probe_inputs(cfg: ProbeConfig) -> tuple[list[QARecord], list[QARecord]]:
    """The questions to probe and the few-shot pool, checked (one task, shots from another
    split when the prompts have shots)."""
    if not cfg.data.path and cfg.data.format not in ("mmlu", "arc", "triviaqa", "nq_open"):
        raise ConfigError("probe: `data.path` is required")
    records = load_source(cfg.data)
    task = task_of(records)
    n_shots = SHOTS[task] if cfg.n_shots is None else cfg.n_shots
    pool: list[QARecord] = []
    if n_shots > 0:
        if cfg.shots is None:
            raise ConfigError(
                f"probe: {n_shots}-shot prompts need a `shots` source from another split "
                "(e.g. MMLU dev, world-facts dev), or set n_shots: 0"
            )
        pool = load_source(cfg.shots)
        if task_of(pool) != task:
            raise ConfigError(f"probe: the shots are {task_of(pool)} but the data is {task}")
        overlap = {r.id for r in records} & {s.id for s in pool}
        if overlap:
            raise ConfigError(
                f"probe: {len(overlap)} shot(s) are also probed questions (e.g. "
                f"{sorted(overlap)[0]!r}); take the shots from another split"
            )
    return records, pool


def probe_config_of(probe_dir: str | Path) -> ProbeConfig:
    """The settings a finished probe ran with (from its ``stage.json``)."""
    manifest_path = Path(probe_dir) / MANIFEST
    try:
        manifest = read_json(manifest_path)
    except FileNotFoundError:
        raise ConfigError(
            f"{probe_dir} is not a probe folder (no {MANIFEST}): give the folder `rait probe "
            "--out` wrote"
        ) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg})", Location(str(manifest_path))) from None
    if manifest.get("stage") != "probe" or manifest.get("status") != "complete":
        raise ConfigError(f"{probe_dir} does not hold a complete probe (see {manifest_path})")
    return build_config(ProbeConfig, manifest["config"], origin=str(manifest_path))


def load_probe(probe_dir: str | Path):
    """A finished probe: its config, data records, task, knowledge rows by id and the probed
    questions as candidates (the knowledge must match the data)."""
    probe_cfg = probe_config_of(probe_dir)
    records = load_source(probe_cfg.data)
    task = task_of(records)
    knowledge_path = Path(probe_dir) / KNOWLEDGE_FILE
    knowledge = read_knowledge(str(knowledge_path), task)
    by_id = {r.id: r for r in records}
    why = "is not in the probe's own data: the data changed since the probe ran; probe again"
    check_ids(knowledge, by_id, str(knowledge_path), why)
    candidates = [
        Candidate(by_id[k], float(row["mu"]), float(row["sigma"]), knowledge=row)
        for k, row in knowledge.items()
    ]
    return probe_cfg, records, task, knowledge, candidates


def _summary(rows: Sequence[dict], seconds: float, backend: str) -> dict:
    mus = [r["mu"] for r in rows]
    bins = [0] * 10
    for mu in mus:
        bins[min(int(mu * 10), 9)] += 1
    summary = {
        "n": len(rows),
        "task": rows[0]["task"] if rows else None,
        "mean_mu": sum(mus) / len(mus) if mus else None,
        "mean_sigma": sum(r["sigma"] for r in rows) / len(rows) if rows else None,
        "known_fraction": sum(m >= DEFAULT_TAU_MU for m in mus) / len(mus) if mus else None,
        "mu_histogram": {"edges": [i / 10 for i in range(11)], "counts": bins},
        "backend": backend,
        "seconds": round(seconds, 2),
    }
    if rows and "greedy_correct" in rows[0]:
        summary["rtuning_certain_fraction"] = sum(r["greedy_correct"] for r in rows) / len(rows)
    return summary


def probe_stage(cfg: ProbeConfig, out_dir: str | Path) -> Stage:
    """The probe's stage folder and fingerprint: its config with the resolved backend (part of
    the result's identity) and the bytes of its data and shots."""
    config = config_to_dict(cfg)
    config["backend"] = resolve_backend(cfg.backend)
    inputs = [s.path for s in (cfg.data, cfg.shots) if s is not None and s.path]
    return Stage(Path(out_dir), "probe", config, inputs)


def run_probe(
    cfg: ProbeConfig, out_dir: str | Path, progress: bool = True, shard: Shard | None = None
) -> dict:
    """Probe every question of ``cfg.data`` into ``out_dir`` (cached and resumable).

    ``shard`` K/N probes only every N-th batch from K into the shard folder and returns (see
    :mod:`rait.distributed`); without it, the rows of finished shards of the same
    configuration are merged in first. Under torchrun every rank probes its own shard and rank
    0 merges them."""
    cfg.validate()
    records, pool = load_probe_inputs(cfg)
    task = task_of(records)
    backend = resolve_backend(cfg.backend)
    out_dir = Path(out_dir)
    stage = probe_stage(cfg, out_dir)
    if stage.is_complete():
        print(f"[probe] up to date, skipped ({stage.path})")
        return read_json(stage.path / PROBE_SUMMARY_FILE)
    procs = Processes.from_env() if shard is None else Processes()
    shard = shard or Shard.of(procs)
    n_shots = SHOTS[task] if cfg.n_shots is None else cfg.n_shots
    shots_of = {r.id: select_shots(r, pool, n_shots) for r in records}
    batch_size = default_batch_size(cfg, task, backend)
    batches = _grouped_batches(records, shots_of, batch_size)
    started = time.perf_counter()
    if shard.sharded:

        def probe_shard(out: ResumableJsonl) -> None:
            todo = [b for b in shard.take(batches) if any(r.id not in out for r in b)]
            _probe_batches(cfg, backend, batch_size, task, todo, shots_of, out, progress)

        probed = run_shard(
            "probe", stage, shard, procs, probe_shard, stage.path / PROBE_SUMMARY_FILE
        )
        if probed is not None:
            return probed
    with stage.lock(), stage.started() as resuming:
        print(f"[probe] {'resuming' if resuming else 'running'} -> {stage.path}")
        with ResumableJsonl(stage.path / KNOWLEDGE_FILE) as out:
            merged = merge_shards(out_dir, stage.fingerprint(), out, {r.id for r in records})
            if merged:
                print(f"[probe] merged {merged} rows from the shards")
            todo = [b for b in batches if any(r.id not in out for r in b)]
            _probe_batches(cfg, backend, batch_size, task, todo, shots_of, out, progress)
            rows = [out.rows[r.id] for r in records]
        summary = _summary(rows, time.perf_counter() - started, backend)
        write_json(stage.path / PROBE_SUMMARY_FILE, summary)
        stage.complete({"knowledge": KNOWLEDGE_FILE, "summary": PROBE_SUMMARY_FILE})
    remove_shards(out_dir)
    procs.barrier()
    return summary


def _probe_batches(cfg, backend, batch_size, task, todo, shots_of, out, progress) -> None:
    """Load the engine (only when there is something to probe) and probe ``todo`` into
    ``out``."""
    if not todo:
        return
    engine, chat = load_stage_engine(cfg, backend, batch_size)
    try:
        encoder = load_encoder(cfg.encoder) if task == "oeqa" else None
        prober = Prober(cfg, engine, chat, encoder)
        total = sum(len(b) for b in todo) + len(out)
        _run_batches(prober, task, todo, shots_of, out, total, progress)
    finally:
        close_engine(engine)  # the GPU is free for the next stage


def _run_batches(prober, task, batches, shots_of, out, total, progress) -> None:
    from tqdm.auto import tqdm

    bar = tqdm(
        total=total,
        initial=len(out),
        unit="q",
        desc="probe",
        disable=not progress,
        dynamic_ncols=True,
    )
    current_group: tuple[str, ...] | None = None
    group_prompts: dict[tuple[str, ...], list[list[int]]] = {}
    try:
        for batch in batches:
            group = tuple(s.id for s in shots_of[batch[0].id])
            prompts = [prober.render(r, shots_of[r.id]) for r in batch]
            if group != current_group and hasattr(prober.engine, "set_shared_prefix"):
                # the group's common prefix, from the first prompt of the group and its shots
                # alone, so it is the same however batches are cut or resumed
                current_group = group
                if group not in group_prompts:
                    group_prompts[group] = _group_prefix(prober, batch[0], shots_of)
                prober.engine.set_shared_prefix(group_prompts[group])
            rows = (prober.probe_mcqa if task == "mcqa" else prober.probe_oeqa)(batch, prompts)
            for row in rows:
                if row["id"] not in out:
                    out.append(row)
            bar.update(sum(1 for _ in rows))
    finally:
        bar.close()


def _group_prefix(prober: Prober, record: QARecord, shots_of) -> list[int]:
    """Tokens every prompt of a shot group starts with: the rendering of the shots followed by
    a placeholder question, cut where two different placeholder questions diverge."""
    from dataclasses import replace

    first = replace(record, id="\x00a", question="\x00a")
    second = replace(record, id="\x00b", question="\x00b")
    shots = shots_of[record.id]
    a = prober.engine.encode(prober.render(first, shots))
    b = prober.engine.encode(prober.render(second, shots))
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    # back off a few tokens: the question's first characters can merge with what precedes them
    return a[: max(n - 2, 0)]


def format_summary(summary: dict, out: str | Path) -> str:
    """A finished probe's summary in two lines."""
    return (
        f"probed {summary['n']} {summary['task']} questions: mean µ {summary['mean_mu']:.3f}, "
        f"mean σ {summary['mean_sigma']:.3f}, known (µ ≥ {DEFAULT_TAU_MU:g}) "
        f"{summary['known_fraction']:.1%}\n"
        f"rows in {out}/{KNOWLEDGE_FILE}, summary in {out}/{PROBE_SUMMARY_FILE}"
    )
