"""The vLLM backend (optional): automatic prefix caching, batched requests, and option-letter
log-probabilities read off the first generated position.

vLLM is imported only when this backend is used. What it is asked for, and why (as read in the
source of vLLM 0.30 and 0.33):

* **Option letters** (:meth:`VLLMEngine.candidate_logprobs`, ``score_first``): one request per
  question with ``logprob_token_ids=[letters]``. vLLM returns, at each generated position, the
  log-probability of the sampled token and of each listed token under the raw model,
  ``log p(t | prompt) = logit_t - logsumexp(logits)`` over the full vocabulary before
  temperature or any processing (``logprobs_mode="raw_logprobs"``, the default) -- the Hugging
  Face backend's quantity. Such a request reads the prefix cache. A request with
  ``prompt_logprobs`` does not (vLLM sets ``skip_reading_prefix_cache`` for it), so scoring
  each option as a prompt token would prefill the whole prompt once per option.
  The requests of one ``generate`` call all carry ``logprob_token_ids`` or none do: vLLM's V1
  model runner gathers token-id log-probabilities for the whole batch when any request asks
  ("V1 exact-ID logprobs overwrite other rows in a mixed batch", vLLM 0.33).
* **Continuations** (R-Tuning's "I am sure" / "I am unsure"): single-token ones the same way
  (one request per prompt); multi-token ones through ``prompt_logprobs=0`` of the joined
  sequence, ``sum_j log p(c_j | prompt, c_<j)`` (these requests recompute their prompt).
* **Samples**: one request per sample (``n=1``) seeded with ``seeds[i][k]``. (vLLM's ``n > 1``
  seeds its k-th child ``seed + k``, not rait's per-sample seed; ``n > 1`` at temperature 0
  is a vLLM error, while greedy samples are identical: one greedy request, its completion
  repeated.) ``temperature`` is checked to lie in [0, 2] (vLLM's range) before anything runs;
  ``top_p=1``, ``top_k=0``.
* **First line** -- cut exactly as the HF backend cuts (:func:`rait.backends.hf.ends_first_line`):
  the completion keeps the generated tokens up to and including the first token after which
  the text holds a newline after non-white-space text; text, token ids and log-probabilities
  are cut together and the text is the decoding of the kept tokens. vLLM's ``stop=["\\n"]``
  cannot say "the first *non-empty* line": it ends at a leading newline with empty text. So
  the first round samples with ``stop=["\\n"]`` (most answers end there), and a sample whose
  text before the newline is blank is continued in a second round: the prompt and its tokens
  so far, no stop strings, the remaining token budget, a seed derived from the sample's; the
  joined tokens are cut by the same rule. Each token is still drawn from the model's
  conditional at the temperature, so the sample is exact (only its random stream differs
  from one uninterrupted draw); two ``generate`` calls at most.
* **End of sequence**: vLLM ends on the tokenizer's EOS (``finish_reason="stop"``,
  ``stop_reason=None``) or on another EOS of the model's generation config, which it adds to
  ``stop_token_ids`` (``stop_reason`` = that token id); the token stays in ``token_ids`` and
  ``logprobs``. Both are ``"eos"`` and the token is dropped, as the HF backend drops it.
* **LoRA**: vLLM's ``max_lora_rank`` takes only the ranks of ``vllm.config.lora.MaxLoRARanks``
  (1, 8, 16, 32, 64, 128, 256, 320, 512): the adapter's rank (``r``, or the largest of its
  ``rank_pattern``) is rounded up to the next one; above the largest it is a clear error.
* **Shutting down**: vLLM's ``LLM`` has no shutdown method. :meth:`VLLMEngine.close` shuts the
  engine core down (its worker processes end and free their GPU memory), drops the ``LLM``,
  then runs vLLM's ``cleanup_dist_env_and_memory`` (or ``gc.collect()`` and
  ``torch.cuda.empty_cache()``), so the GPU is free for the next stage; the stages close the
  engine when they are done (:func:`rait.backends.close_engine`).

vLLM's own errors (a rejected parameter, a failed request) come back as one-line
:class:`~rait.errors.ModelError`.
"""

from __future__ import annotations

import gc
import hashlib
import json
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rait.backends.hf import ends_first_line, token_holds_newline
from rait.engine import Completion
from rait.errors import ModelError
from rait.generation import check_context
from rait.models import ModelConfig, resolve_model_source, use_chat_template

#: vLLM's ``MaxLoRARanks`` (vllm/config/lora.py, 0.30 to 0.33), used when it cannot be read
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
MAX_TEMPERATURE = 2.0  # SamplingParams rejects higher temperatures
MAX_LOGPROB_TOKEN_IDS = 128  # SamplingParams' limit on ``logprob_token_ids``


def _one_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (or its type's name)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def adapter_rank(adapter: str) -> int:
    """The largest LoRA rank of a PEFT adapter: ``r`` and every ``rank_pattern`` entry."""
    config_file = Path(adapter) / "adapter_config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
        ranks = [int(config.get("r", 16))]
        ranks += [int(r) for r in (config.get("rank_pattern") or {}).values()]
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise ModelError(f"cannot read the adapter's {config_file}: {exc}") from None
    rank = max(ranks)
    if rank < 1:
        raise ModelError(f"the adapter's {config_file} gives LoRA rank {rank}; it must be >= 1")
    return rank


def supported_lora_ranks() -> tuple[int, ...]:
    """The ``max_lora_rank`` values the installed vLLM accepts."""
    try:
        from vllm.config.lora import MaxLoRARanks

        ranks = tuple(sorted(int(r) for r in typing.get_args(MaxLoRARanks)))
    except (ImportError, AttributeError, TypeError, ValueError):
        ranks = ()
    return ranks or LORA_RANKS


def max_lora_rank(rank: int, allowed: Sequence[int] = LORA_RANKS) -> int:
    """The smallest rank vLLM accepts as ``max_lora_rank`` that holds an adapter of ``rank``."""
    for value in sorted(allowed):
        if value >= rank:
            return value
    raise ModelError(
        f"the adapter has LoRA rank {rank}; vLLM serves ranks up to {max(allowed)} "
        f"(max_lora_rank is one of {', '.join(map(str, sorted(allowed)))}); use the HF backend"
    )


def continuation_seed(seed: int) -> int:
    """The 63-bit seed of a sample's second round (derived, so resumed runs draw the same)."""
    digest = hashlib.sha256(f"{seed}\x00continue".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def check_sampling(n: int, temperature: float, max_new_tokens: int) -> None:
    """What vLLM would reject, as one error before anything runs."""
    if n <= 0:
        raise ModelError(f"number of samples must be positive, got {n}")
    if not 0.0 <= temperature <= MAX_TEMPERATURE:
        raise ModelError(
            f"temperature must be in [0, {MAX_TEMPERATURE:g}] with the vLLM backend, "
            f"got {temperature}"
        )
    if max_new_tokens < 1:
        raise ModelError(f"max_new_tokens must be >= 1, got {max_new_tokens}")


class VLLMEngine:
    """Scoring and sampling with vLLM (see the module docstring)."""

    name = "vllm"

    def __init__(
        self,
        model_cfg: ModelConfig,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
    ):
        try:
            import vllm
        except ImportError as exc:  # pragma: no cover - resolve_backend checks first
            raise ModelError(f"backend 'vllm' needs the vllm package: {exc}") from None
        self._vllm = vllm
        self.llm: Any = None
        source, gguf_file = resolve_model_source(model_cfg)
        if gguf_file:
            raise ModelError("the vLLM backend needs a safetensors model, not a GGUF file")
        dtype = "auto" if model_cfg.dtype == "auto" else model_cfg.dtype
        lora: dict = {}
        self.lora_request = None
        if model_cfg.adapter:
            from vllm.lora.request import LoRARequest

            rank = max_lora_rank(adapter_rank(model_cfg.adapter), supported_lora_ranks())
            lora = {"enable_lora": True, "max_lora_rank": rank}
            self.lora_request = LoRARequest("rait", 1, model_cfg.adapter)
        try:
            self.llm = vllm.LLM(
                model=source,
                revision=model_cfg.revision,
                dtype=dtype,
                trust_remote_code=model_cfg.trust_remote_code,
                enable_prefix_caching=True,
                tensor_parallel_size=tensor_parallel_size,
                gpu_memory_utilization=gpu_memory_utilization,
                max_model_len=max_model_len,
                **lora,
            )
        except Exception as exc:
            raise ModelError(
                f"vLLM cannot load model {model_cfg.name!r}: {_one_line(exc)}"
            ) from None
        self.tokenizer = self.llm.get_tokenizer()
        self.chat = use_chat_template(self.tokenizer, model_cfg.chat_template, model_cfg.name)
        self.model_name = model_cfg.name
        self.limit = getattr(self.llm.llm_engine.model_config, "max_model_len", None)
        self._newline_token: dict[int, bool] = {}

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Shut vLLM down and free its GPU memory (see the module docstring); idempotent."""
        llm, self.llm = self.llm, None
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception as exc:
            warnings.warn(
                f"vLLM's engine did not shut down cleanly: {_one_line(exc)}", stacklevel=2
            )
        del llm
        try:
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory
        except ImportError:
            cleanup_dist_env_and_memory = None
        gc.collect()
        try:
            if cleanup_dist_env_and_memory is not None:
                cleanup_dist_env_and_memory()  # also gc.collect() and empty_cache()
            else:
                _empty_cuda_cache()
        except Exception as exc:
            warnings.warn(f"vLLM's memory was not freed cleanly: {_one_line(exc)}", stacklevel=2)

    def __enter__(self) -> VLLMEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ requests
    def _params(self, **kwargs: Any) -> Any:
        try:
            return self._vllm.SamplingParams(**kwargs)
        except Exception as exc:
            raise ModelError(f"vLLM rejects the sampling parameters: {_one_line(exc)}") from None

    def _token_params(self, key: str, tokens: Sequence[int]) -> Any:
        """One greedy step that returns the log-probability of each of ``tokens``."""
        _check_token_count(key, tokens)
        return self._params(max_tokens=1, temperature=0.0, logprob_token_ids=list(tokens))

    def _generate(self, token_lists: Sequence[Sequence[int]], params: Any) -> list:
        if not token_lists:
            return []
        if self.llm is None:
            raise ModelError(f"the vLLM engine of {self.model_name!r} is closed")
        requests = [{"prompt_token_ids": [int(t) for t in ids]} for ids in token_lists]
        kwargs: dict[str, Any] = {"use_tqdm": False}
        if self.lora_request is not None:
            kwargs["lora_request"] = self.lora_request
        try:
            return self.llm.generate(requests, params, **kwargs)
        except Exception as exc:
            raise ModelError(f"vLLM failed on {self.model_name!r}: {_one_line(exc)}") from None

    # ------------------------------------------------------------------ tokens
    def encode(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def check_length(self, key: str, n_tokens: int, new_tokens: int) -> None:
        check_context(self.model_name, key, n_tokens, new_tokens, self.limit)

    def set_shared_prefix(self, tokens: Sequence[int]) -> None:
        """vLLM finds shared prefixes itself (automatic prefix caching)."""

    def _ends_line(self, token_id: int) -> bool:
        return token_holds_newline(self.tokenizer, self._newline_token, token_id)

    def continuation_tokens(self, prompt: str, continuation: str) -> list[int]:
        """The tokens ``continuation`` adds after ``prompt`` (as the HF backend reads them)."""
        base = self.encode(prompt)
        full = self.encode(prompt + continuation)
        if full[: len(base)] == base and len(full) > len(base):
            return full[len(base) :]
        return self.encode(continuation)

    # ------------------------------------------------------------------ scoring
    def candidate_logprobs(
        self, prompts: Sequence[str], keys: Sequence[str], candidates: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """For each prompt, the log-probability of each candidate next token: one request per
        prompt, read off its first generated position."""
        requests, params, index = [], [], []
        for i, (prompt, key) in enumerate(zip(prompts, keys)):
            ids = self.encode(prompt)
            self.check_length(key, len(ids), 1)
            tokens = [int(t) for t in candidates[i]]
            if tokens:
                requests.append(ids)
                params.append(self._token_params(key, tokens))
                index.append((i, tokens))
        outputs = self._generate(requests, params)
        result: list[list[float]] = [[] for _ in prompts]
        for (i, tokens), out in zip(index, outputs):
            result[i] = _first_position(out.outputs[0], tokens)
        return result

    def continuation_logprobs(
        self,
        prompts: Sequence[str],
        keys: Sequence[str],
        continuations: Sequence[Sequence[str]],
    ) -> list[list[float]]:
        """For each prompt, the summed log-probability of each continuation's tokens: one
        scoring request per prompt for its single-token continuations, ``prompt_logprobs`` of
        the joined sequence for each longer one."""
        result: list[list[float]] = [[0.0] * len(texts) for texts in continuations]
        single: list[tuple[int, list[int], list[int]]] = []  # (prompt, slots, tokens)
        single_requests, single_params = [], []
        multi: list[tuple[int, int, int]] = []  # (prompt, slot, n tokens)
        multi_requests = []
        for i, (prompt, key) in enumerate(zip(prompts, keys)):
            base = self.encode(prompt)
            slots, tokens = [], []
            for j, text in enumerate(continuations[i]):
                added = self.continuation_tokens(prompt, text)
                if not added:
                    raise ModelError(f"{key}: continuation {text!r} has no tokens")
                self.check_length(key, len(base) + len(added), 1)
                if len(added) == 1:
                    slots.append(j)
                    tokens.append(int(added[0]))
                else:
                    multi.append((i, j, len(added)))
                    multi_requests.append([*base, *added])
            if tokens:
                single.append((i, slots, tokens))
                single_requests.append(base)
                single_params.append(self._token_params(key, tokens))
        for (i, slots, tokens), out in zip(single, self._generate(single_requests, single_params)):
            for j, value in zip(slots, _first_position(out.outputs[0], tokens)):
                result[i][j] = value
        params = self._params(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        for (i, j, n), out in zip(multi, self._generate(multi_requests, params)):
            ids, entries = out.prompt_token_ids, out.prompt_logprobs
            result[i][j] = sum(
                float(entries[t][ids[t]].logprob) for t in range(len(ids) - n, len(ids))
            )
        return result

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        prompts: Sequence[str],
        keys: Sequence[str],
        n: int,
        temperature: float,
        max_new_tokens: int,
        seeds: Sequence[Sequence[int]] | None = None,
        stop_at_first_line: bool = True,
        score_first: Sequence[Sequence[int]] | None = None,
    ) -> list[list[Completion]]:
        """``n`` completions per prompt; ``temperature == 0`` is greedy (the ``n`` completions
        are then identical). ``seeds[i][k]`` seeds sample ``k`` of prompt ``i``.
        ``score_first[i]``: token ids whose log-probabilities at the first generated position
        are returned in each completion's ``first_token_logprobs``."""
        check_sampling(n, temperature, max_new_tokens)
        draws = 1 if temperature == 0 else n
        if seeds is not None and temperature > 0:
            for key, row in zip(keys, seeds):
                if len(row) < n:
                    raise ModelError(f"record {key!r}: {len(row)} seeds for {n} samples")
        prompt_ids = [self.encode(p) for p in prompts]
        for key, ids in zip(keys, prompt_ids):
            self.check_length(key, len(ids), max_new_tokens)
        slots: list[tuple[int, int | None]] = []  # (prompt, seed) of each request
        params = []
        for i, key in enumerate(keys):
            for k in range(draws):
                seed = None if seeds is None or temperature == 0 else int(seeds[i][k])
                first = None if score_first is None else [int(t) for t in score_first[i]]
                if first is not None:
                    _check_token_count(key, first)
                slots.append((i, seed))
                params.append(
                    self._params(
                        n=1,
                        temperature=temperature,
                        top_p=1.0,
                        top_k=0,
                        seed=seed,
                        max_tokens=max_new_tokens,
                        stop=["\n"] if stop_at_first_line else None,
                        logprobs=None if first is not None else 0,
                        logprob_token_ids=first,
                    )
                )
        outputs = self._generate([prompt_ids[i] for i, _ in slots], params)
        drawn = []
        for (i, _), out in zip(slots, outputs):
            seq = out.outputs[0]
            first = None if score_first is None else _first_position(seq, score_first[i])
            drawn.append([*_read(seq), first])
        if stop_at_first_line:
            self._continue_blank_lines(prompt_ids, slots, drawn, temperature, max_new_tokens)
        completions = [self._completion(d, stop_at_first_line) for d in drawn]
        results: list[list[Completion]] = []
        for i in range(len(prompts)):
            group = completions[i * draws : (i + 1) * draws]
            if draws < n:  # greedy: the one completion, n times (independent copies)
                group = [_copy(group[0]) for _ in range(n)]
            results.append(group)
        return results

    def _continue_blank_lines(self, prompt_ids, slots, drawn, temperature, max_new_tokens):
        """Second round: samples that stopped at a newline before any non-blank text go on
        from their tokens so far, without stop strings, for the rest of their budget."""
        todo, requests, params = [], [], []
        for r, (ids, _lps, ended, _) in enumerate(drawn):
            if ended != "stop" or len(ids) >= max_new_tokens or self._line_end(ids) is not None:
                continue
            i, seed = slots[r]
            todo.append(r)
            requests.append([*prompt_ids[i], *ids])
            params.append(
                self._params(
                    n=1,
                    temperature=temperature,
                    top_p=1.0,
                    top_k=0,
                    seed=None if seed is None else continuation_seed(seed),
                    max_tokens=max_new_tokens - len(ids),
                    logprobs=0,
                )
            )
        for r, out in zip(todo, self._generate(requests, params)):
            more_ids, more_lps, ended = _read(out.outputs[0])
            ids, lps, _, first = drawn[r]
            drawn[r] = [[*ids, *more_ids], [*lps, *more_lps], ended, first]

    def _line_end(self, ids: Sequence[int]) -> int | None:
        """How many of ``ids`` the first non-empty line takes (None: it does not end)."""
        for j, token in enumerate(ids):
            if self._ends_line(token) and ends_first_line(self.tokenizer, ids[: j + 1]):
                return j + 1
        return None

    def _completion(self, drawn, first_line: bool) -> Completion:
        ids, lps, ended, first = drawn
        finished_by = "eos" if ended == "eos" else "length"
        cut = self._line_end(ids) if first_line else None
        if cut is not None:
            ids, lps, finished_by = ids[:cut], lps[:cut], "newline"
        text = self.tokenizer.decode(list(ids), skip_special_tokens=True)
        return Completion(text, list(ids), list(lps), finished_by, first)


def _read(seq) -> tuple[list[int], list[float], str]:
    """A vLLM sequence's token ids, their log-probabilities and how it ended: ``"eos"`` (the
    EOS token, the tokenizer's or another of the generation config's, dropped), ``"stop"``
    (a stop string) or ``"length"``."""
    ids = [int(t) for t in seq.token_ids]
    lps = [float(entry[t].logprob) for t, entry in zip(ids, seq.logprobs or [])]
    if seq.finish_reason == "length":
        return ids, lps, "length"
    if seq.finish_reason != "stop":
        raise ModelError(f"vLLM ended a sample with {seq.finish_reason!r}")
    if isinstance(seq.stop_reason, str):
        return ids, lps, "stop"
    # stop_reason None: the tokenizer's EOS; an int: an EOS of the generation config
    if ids and (seq.stop_reason is None or ids[-1] == seq.stop_reason):
        return ids[:-1], lps[: len(ids) - 1], "eos"
    return ids, lps, "eos"


def _check_token_count(key: str, tokens: Sequence[int]) -> None:
    if len(tokens) > MAX_LOGPROB_TOKEN_IDS:
        raise ModelError(
            f"record {key!r}: {len(tokens)} candidate tokens; vLLM scores at most "
            f"{MAX_LOGPROB_TOKEN_IDS} per request"
        )


def _first_position(seq, tokens: Sequence[int]) -> list[float]:
    """The log-probabilities of ``tokens`` at a sequence's first generated position."""
    entry = (seq.logprobs or [None])[0]
    if entry is None:
        raise ModelError("vLLM returned no log-probabilities for the first generated token")
    return [float(entry[int(t)].logprob) for t in tokens]


def _copy(c: Completion) -> Completion:
    first = None if c.first_token_logprobs is None else list(c.first_token_logprobs)
    return Completion(c.text, list(c.token_ids), list(c.token_logprobs), c.finished_by, first)


def _empty_cuda_cache() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover - rait depends on torch
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
