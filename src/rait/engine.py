"""What the probe and the evaluation ask of an inference backend: the :class:`Engine` protocol,
its :class:`Completion`, and the engine options shared by ``rait probe`` and ``rait eval``
(:class:`VllmConfig`). The backends implement it (:mod:`rait.backends`); this module imports
none of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from rait.cliargs import option
from rait.errors import ConfigError


@dataclass
class Completion:
    """One generated continuation: its text (first line kept whole, nothing after it) and
    the log-probability of each generated token under the model (temperature 1)."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    token_logprobs: list[float] = field(default_factory=list)
    finished_by: str = "length"  # "eos", "newline" or "length"
    first_token_logprobs: list[float] | None = None  # of the ``score_first`` candidates


@dataclass
class VllmConfig:
    """The vLLM engine's options (the ``vllm`` section of a probe or eval config; the HF
    backend ignores them): tensor parallelism over this many GPUs, the share of each GPU's
    memory vLLM may take, and the context it serves (``max_model_len``; None: the model's own,
    which vLLM may fail to fit in memory for long-context models)."""

    tensor_parallel_size: int = option(1, help="GPUs per vLLM engine (tensor parallelism)")
    gpu_memory_utilization: float = option(0.85, help="share of GPU memory vLLM may take")
    max_model_len: int | None = option(
        None, help="context (prompt + answer tokens) vLLM serves; default: the model's"
    )

    def validate(self) -> None:
        if self.tensor_parallel_size < 1:
            raise ConfigError(
                f"vllm.tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}"
            )
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ConfigError(
                f"vllm.gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}"
            )
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ConfigError(f"vllm.max_model_len must be >= 1, got {self.max_model_len}")


@runtime_checkable
class Engine(Protocol):
    """An inference backend as the probe and the evaluation use it.

    ``candidate_logprobs``: for each prompt, the log-probability (log-softmax over the whole
    vocabulary) of each candidate next token (MCQA option letters). ``continuation_logprobs``:
    for each prompt, the summed log-probability of each given continuation (R-Tuning's
    "I am sure" / "I am unsure"). ``sample``: ``n`` completions per prompt, greedy at
    ``temperature == 0``, each from its own seed, stopped after the first line on request,
    with the log-probabilities of ``score_first`` tokens at the first step.
    """

    name: str
    tokenizer: Any

    @property
    def chat(self) -> bool:
        """Whether prompts go through the tokenizer's chat template."""
        ...

    def encode(self, prompt: str) -> list[int]: ...

    def check_length(self, key: str, n_tokens: int, new_tokens: int) -> None: ...

    def set_shared_prefix(self, tokens: Sequence[int]) -> None: ...

    def candidate_logprobs(
        self, prompts: Sequence[str], keys: Sequence[str], candidates: Sequence[Sequence[int]]
    ) -> list[list[float]]: ...

    def continuation_logprobs(
        self, prompts: Sequence[str], keys: Sequence[str], continuations: Sequence[Sequence[str]]
    ) -> list[list[float]]: ...

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
    ) -> list[list[Completion]]: ...
