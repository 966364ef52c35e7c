"""Inference backends: Hugging Face (always available) and vLLM (optional, lazily imported).

Both offer the two operations the probe and the evaluation need:

* ``candidate_logprobs(prompts, keys, candidates)``: for each prompt, the log-probability
  (log-softmax over the whole vocabulary) of each candidate next token;
* ``sample(prompts, keys, n, temperature, max_new_tokens, seeds, stop_at_first_line)``: ``n``
  completions per prompt (greedy when ``temperature == 0``).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from rait.errors import ConfigError

BACKENDS = ("auto", "hf", "vllm")


def vllm_available() -> bool:
    """vLLM is installed and a CUDA GPU is visible."""
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def resolve_backend(name: str) -> str:
    """``auto`` -> ``vllm`` when installed with a GPU, else ``hf``."""
    if name not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name == "auto":
        return "vllm" if vllm_available() else "hf"
    if name == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "backend 'vllm' is not installed; `pip install vllm` on a machine with a CUDA GPU, "
            "or use backend 'hf'"
        )
    return name


def load_engine(model_cfg: Any, backend: str, batch_size: int, vllm_options: dict | None = None):
    """Load the model for ``backend`` (already resolved) and wrap it in an engine."""
    if backend == "vllm":
        from rait.backends.vllm import VLLMEngine

        return VLLMEngine(model_cfg, **(vllm_options or {}))
    from rait.backends.hf import HFEngine
    from rait.models import load_model

    return HFEngine(load_model(model_cfg), batch_size=batch_size)


def load_stage_engine(cfg: Any, backend: str, batch_size: int) -> tuple[Any, bool]:
    """The engine of a probe or an evaluation config (its model and vLLM settings) and whether
    its prompts go through the chat template."""
    engine = load_engine(
        cfg.model,
        backend,
        batch_size,
        {
            "tensor_parallel_size": cfg.vllm_tensor_parallel_size,
            "gpu_memory_utilization": cfg.vllm_gpu_memory_utilization,
        },
    )
    chat = getattr(engine, "chat", None)
    return engine, engine.lm.use_chat_template if chat is None else chat
