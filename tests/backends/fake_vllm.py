"""A stand-in for the part of vLLM that rait uses (vLLM itself needs a GPU), behaving as vLLM
0.30 and 0.33 do where rait depends on it (read in their source):

* ``SamplingParams`` validates as vLLM's does: temperature in [0, 2], ``n == 1`` when greedy,
  ``logprob_token_ids`` at most 128 ids inside the vocabulary (checked at ``generate``), and a
  request with ``prompt_logprobs`` skips reading the prefix cache (``skip_reading_prefix_cache``);
* ``LLM(...)`` accepts ``max_lora_rank`` only in ``MaxLoRARanks``, and a LoRA request whose
  adapter rank exceeds it fails; ``max_model_len`` caps the context;
* ``generate``: ``n > 1`` fans out into children seeded ``seed + k``; the tokenizer's EOS ends
  a sequence with ``stop_reason=None``, another EOS of the generation config (added to
  ``stop_token_ids``) with ``stop_reason`` = its id, and either stays in ``token_ids`` and
  ``logprobs`` while the text leaves it out; a stop string ends it with the text cut before
  the string (so a leading newline with ``stop=["\\n"]`` gives empty text) while the token ids
  keep the token that completed it; sample log-probabilities are the raw model's;
* the prefix cache: full blocks of every prompt are cached; a request reads the longest cached
  prefix (always recomputing its last token) unless it skips the cache; ``LLM.prefilled``
  counts the prompt tokens actually computed;
* ``llm_engine.engine_core.shutdown()`` ends the engine (later calls fail).

The "model": ``LLM.model_fn(prompt_ids, seed)`` gives the tokens a sequence would produce
(``seed`` is None when greedy); when they run out it emits the EOS. ``model_logprob`` gives
``log p(token | context)``.
"""

from __future__ import annotations

import importlib.machinery
import json
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from rait.models import build_tiny_tokenizer

MaxLoRARanks = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512]
MAX_LOGPROB_TOKEN_IDS = 128
MODEL_LEN = 512  # the stand-in model's own context
BLOCK_SIZE = 4  # prefix-cache block, in tokens


class VLLMValidationError(Exception):
    """vLLM's request-validation error (not a ValueError)."""


class EngineDeadError(Exception):
    pass


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list
    cumulative_logprob: float | None
    logprobs: list | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list
    prompt_logprobs: list | None
    outputs: list = field(default_factory=list)
    num_cached_tokens: int = 0


def model_logprob(context, token) -> float:
    """The stand-in model's log p(token | context): depends on the token and the context."""
    context = list(context)
    return -0.05 * (1 + (int(token) * 31 + len(context) * 7 + sum(context[-3:])) % 97)


def default_model(prompt_ids, seed):
    tokenizer = build_tiny_tokenizer()
    name = "greedy" if seed is None else f"s{seed % 1000}"
    return tokenizer(f" answer {name}\nQuestion: more", add_special_tokens=False)["input_ids"]


class SamplingParams:
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "n": 1,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "seed": None,
        "stop": None,
        "stop_token_ids": None,
        "ignore_eos": False,
        "max_tokens": 16,
        "logprobs": None,
        "prompt_logprobs": None,
        "logprob_token_ids": None,
        "skip_reading_prefix_cache": None,
    }

    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(self.DEFAULTS)
        if unknown:
            raise TypeError(f"Unexpected keyword argument {sorted(unknown)[0]!r}")
        self.kwargs = dict(kwargs)
        for name, default in self.DEFAULTS.items():
            setattr(self, name, kwargs.get(name, default))
        self._post_init()

    def _post_init(self):
        if 0 < self.temperature < 1e-2:
            self.temperature = 1e-2
        if self.seed == -1:
            self.seed = None
        self.stop = (
            [] if self.stop is None else [self.stop] if isinstance(self.stop, str) else self.stop
        )
        self.stop_token_ids = list(self.stop_token_ids or [])
        if not isinstance(self.n, int) or self.n < 1:
            raise VLLMValidationError(f"n must be at least 1, got {self.n}.")
        if not math.isfinite(self.temperature) or self.temperature < 0.0:
            raise VLLMValidationError(f"temperature must be non-negative, got {self.temperature}.")
        if self.temperature > 2.0:
            raise VLLMValidationError(f"temperature must be in [0, 2], got {self.temperature}.")
        if not 0.0 < self.top_p <= 1.0:
            raise VLLMValidationError(f"top_p must be in (0, 1], got {self.top_p}.")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise VLLMValidationError(f"max_tokens must be at least 1, got {self.max_tokens}.")
        if any(not s for s in self.stop):
            raise VLLMValidationError("stop cannot contain an empty string.")
        if self.temperature < 1e-5:
            self.top_p, self.top_k = 1.0, 0
            if self.n > 1:
                raise VLLMValidationError(f"n must be 1 when using greedy sampling, got {self.n}.")
        if self.skip_reading_prefix_cache is None:
            self.skip_reading_prefix_cache = self.prompt_logprobs is not None

    @property
    def num_logprobs(self):
        if self.logprobs is not None:
            return self.logprobs
        return len(self.logprob_token_ids) if self.logprob_token_ids else None

    def verify(self, vocab_size: int) -> None:
        """vLLM's checks against the model (``SamplingParams.verify``, at ``generate``)."""
        if self.logprob_token_ids is not None:
            n = len(self.logprob_token_ids)
            if n > MAX_LOGPROB_TOKEN_IDS:
                raise VLLMValidationError(
                    f"Requested logprob_token_ids of length {n}, which is greater than max "
                    f"allowed: {MAX_LOGPROB_TOKEN_IDS}"
                )
            bad = [t for t in self.logprob_token_ids if t < 0 or t >= vocab_size]
            if bad:
                raise VLLMValidationError(
                    f"token_id(s) {bad} in logprob_token_ids contain out-of-vocab token ids. "
                    f"Vocabulary size: {vocab_size}"
                )
            if self.logprobs is not None and self.logprobs != n:
                raise VLLMValidationError(
                    "When both logprobs and logprob_token_ids are set, logprobs must equal "
                    f"len(logprob_token_ids). Got logprobs={self.logprobs}, "
                    f"len(logprob_token_ids)={n}."
                )
        if self.logprobs not in (None, 0) and self.logprob_token_ids is None:
            raise NotImplementedError("the stand-in returns no top-k log-probabilities")

    def child(self, k: int) -> SamplingParams:
        """The k-th of ``n`` (vllm/v1/engine/parallel_sampling.py): ``seed + k``."""
        kwargs = dict(self.kwargs, n=1)
        if self.seed is not None:
            kwargs["seed"] = self.seed + k
        return SamplingParams(**kwargs)


class LoRARequest:
    def __init__(self, lora_name, lora_int_id, lora_path):
        self.lora_name = lora_name
        self.lora_int_id = lora_int_id
        self.lora_path = lora_path


class EngineCoreClient:
    def __init__(self):
        self.shutdowns = 0

    def shutdown(self, timeout=None):
        self.shutdowns += 1


class LLM:
    instances: ClassVar[list] = []
    model_fn: ClassVar[Any] = staticmethod(default_model)

    def __init__(
        self,
        model,
        *,
        revision=None,
        dtype="auto",
        trust_remote_code=False,
        enable_prefix_caching=None,
        tensor_parallel_size=1,
        gpu_memory_utilization=0.9,
        max_model_len=None,
        enable_lora=False,
        max_lora_rank=16,
        max_loras=1,
    ):
        self.kwargs = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        if enable_lora and max_lora_rank not in typing.get_args(MaxLoRARanks):
            allowed = ", ".join(map(str, typing.get_args(MaxLoRARanks)))
            raise ValueError(
                "1 validation error for LoRAConfig\nmax_lora_rank\n"
                f"  Input should be {allowed} [type=literal_error, input_value={max_lora_rank}]"
            )
        if max_model_len is not None and max_model_len > MODEL_LEN:
            raise ValueError(
                f"User-specified max_model_len ({max_model_len}) is greater than the derived "
                f"max_model_len ({MODEL_LEN})."
            )
        self.tokenizer = build_tiny_tokenizer()
        eos = self.tokenizer.eos_token_id
        #: the model's generation config lists a second EOS (as Llama 3 Instruct does)
        self.generation_eos = [eos, self.tokenizer.pad_token_id]
        self.llm_engine = types.SimpleNamespace(
            model_config=types.SimpleNamespace(max_model_len=max_model_len or MODEL_LEN),
            engine_core=EngineCoreClient(),
        )
        self.cache: set[tuple] = set()
        self.prefilled = 0
        self.calls: list = []
        self.generate_kwargs: list = []
        LLM.instances.append(self)

    def get_tokenizer(self):
        return self.tokenizer

    # ------------------------------------------------------------------ generate
    def generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None):
        if self.llm_engine.engine_core.shutdowns:
            raise EngineDeadError("EngineCore encountered an issue. See stack trace above.")
        self.calls.append((prompts, sampling_params))
        self.generate_kwargs.append({"lora_request": lora_request} if lora_request else {})
        params = sampling_params
        if not isinstance(params, list):
            params = [params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError("The lengths of prompts and sampling_params must be the same.")
        if lora_request is not None:
            self._check_lora(lora_request)
        vocab = len(self.tokenizer)
        for p in params:
            p.verify(vocab)
        return [
            self._request(str(r), list(prompt["prompt_token_ids"]), p)
            for r, (prompt, p) in enumerate(zip(prompts, params))
        ]

    def _check_lora(self, request):
        if not self.kwargs["enable_lora"]:
            raise ValueError("LoRA is not enabled. Please set `enable_lora` to True.")
        config = json.loads((Path(request.lora_path) / "adapter_config.json").read_text())
        rank = max([config.get("r", 16), *(config.get("rank_pattern") or {}).values()])
        if rank > self.kwargs["max_lora_rank"]:
            raise ValueError(
                f"LoRA rank {rank} is greater than max_lora_rank {self.kwargs['max_lora_rank']}."
            )

    def _request(self, request_id, ids, p):
        limit = self.llm_engine.model_config.max_model_len
        if len(ids) > limit:
            raise ValueError(f"The decoder prompt (length {len(ids)}) is longer than {limit}.")
        cached = self._read_cache(ids, p)
        prompt_logprobs = None
        if p.prompt_logprobs is not None:
            prompt_logprobs = [None] + [
                {ids[t]: Logprob(model_logprob(ids[:t], ids[t]), 1)} for t in range(1, len(ids))
            ]
        outputs = [self._sequence(k, ids, p.child(k)) for k in range(p.n)]
        return RequestOutput(request_id, ids, prompt_logprobs, outputs, cached)

    def _read_cache(self, ids, p) -> int:
        blocks = [
            tuple(ids[: b + BLOCK_SIZE]) for b in range(0, len(ids) - BLOCK_SIZE + 1, BLOCK_SIZE)
        ]
        cached = 0
        if not p.skip_reading_prefix_cache:
            for block in blocks:
                if block not in self.cache:
                    break
                cached = len(block)
            cached = min(cached, len(ids) - 1)  # the last prompt token is always computed
        self.prefilled += len(ids) - cached
        self.cache.update(blocks)
        return cached

    def _sequence(self, index, prompt, p):
        seed = None if p.temperature < 1e-5 else p.seed
        planned = list(LLM.model_fn(list(prompt), seed))
        eos = self.tokenizer.eos_token_id
        stop_ids = set(p.stop_token_ids) | (set(self.generation_eos) - {eos})
        limit = self.llm_engine.model_config.max_model_len
        out, logprobs = [], []
        finish, reason = None, None
        while finish is None:
            context = prompt + out
            token = planned[len(out)] if len(out) < len(planned) else eos
            out.append(token)
            if p.num_logprobs is not None:
                entry = {token: Logprob(model_logprob(context, token))}
                for t in p.logprob_token_ids or []:
                    entry[t] = Logprob(model_logprob(context, t))
                logprobs.append(entry)
            if token == eos and not p.ignore_eos:
                finish = "stop"
            elif token in stop_ids:
                finish, reason = "stop", token
            elif len(prompt) + len(out) >= limit or len(out) >= p.max_tokens:
                finish = "length"
            text = self.tokenizer.decode(
                out[:-1] if finish == "stop" else out, skip_special_tokens=True
            )
            hits = [(text.find(s), s) for s in p.stop if s in text]
            if hits:
                at, string = min(hits)
                text, finish, reason = text[:at], "stop", string
        cumulative = sum(e[t].logprob for e, t in zip(logprobs, out)) if logprobs else None
        return CompletionOutput(index, text, out, cumulative, logprobs or None, finish, reason)


def cleanup_dist_env_and_memory(shutdown_ray: bool = False):
    CLEANUPS.append(shutdown_ray)


CLEANUPS: list = []


def install(monkeypatch) -> types.ModuleType:
    """Put the stand-in in ``sys.modules`` as ``vllm`` (and the submodules rait imports)."""
    names = {
        "vllm": {"LLM": LLM, "SamplingParams": SamplingParams},
        "vllm.lora": {},
        "vllm.lora.request": {"LoRARequest": LoRARequest},
        "vllm.config": {},
        "vllm.config.lora": {"MaxLoRARanks": MaxLoRARanks},
        "vllm.distributed": {},
        "vllm.distributed.parallel_state": {
            "cleanup_dist_env_and_memory": cleanup_dist_env_and_memory
        },
        "vllm.exceptions": {"VLLMValidationError": VLLMValidationError},
    }
    modules = {}
    for name, attrs in names.items():
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        module.__dict__.update(attrs)
        modules[name] = module
        monkeypatch.setitem(sys.modules, name, module)
    for name, module in modules.items():
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(modules[parent], child, module)
    LLM.instances.clear()
    CLEANUPS.clear()
    monkeypatch.setattr(LLM, "model_fn", staticmethod(default_model))
    return modules["vllm"]
