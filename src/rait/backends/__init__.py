"""Inference backends, registered by name: Hugging Face (always available) and vLLM (optional,
imported only when used). Each implements :class:`rait.engine.Engine`; a third backend is one
module with an engine class and one :func:`register_backend` call.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rait.backends.hf import HFEngine
from rait.backends.vllm import VLLMEngine
from rait.engine import Engine, VllmConfig
from rait.errors import ConfigError
from rait.models import load_model


@dataclass(frozen=True)
class Backend:
    """A registered backend: ``load(model_cfg, batch_size, vllm_cfg) -> Engine``; ``missing()``:
    why it cannot run here (None when it can); ``preferred()``: whether ``auto`` picks it."""

    name: str
    load: Callable[[Any, int, VllmConfig], Engine]
    missing: Callable[[], str | None] = lambda: None
    preferred: Callable[[], bool] = lambda: False


BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    if backend.name in BACKENDS or backend.name == "auto":
        raise ConfigError(f"backend {backend.name!r} is already registered")
    BACKENDS[backend.name] = backend
    return backend


def backend_names() -> list[str]:
    """``auto`` and every registered backend (the CLI's choices)."""
    return ["auto", *BACKENDS]


def _load_hf(model_cfg: Any, batch_size: int, vllm_cfg: VllmConfig) -> Engine:
    return HFEngine(load_model(model_cfg), batch_size=batch_size)


def _load_vllm(model_cfg: Any, batch_size: int, vllm_cfg: VllmConfig) -> Engine:
    return VLLMEngine(
        model_cfg,
        tensor_parallel_size=vllm_cfg.tensor_parallel_size,
        gpu_memory_utilization=vllm_cfg.gpu_memory_utilization,
        max_model_len=vllm_cfg.max_model_len,
    )


def _vllm_missing() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return (
            "backend 'vllm' is not installed; `pip install vllm` on a machine with a CUDA GPU, "
            "or use backend 'hf'"
        )
    return None


def vllm_available() -> bool:
    """vLLM is installed and a CUDA GPU is visible."""
    if _vllm_missing() is not None:
        return False
    import torch

    return torch.cuda.is_available()


register_backend(Backend("hf", _load_hf))
register_backend(Backend("vllm", _load_vllm, _vllm_missing, vllm_available))


def resolve_backend(name: str) -> str:
    """``auto`` -> the first preferred backend (vLLM when installed with a GPU), else ``hf``;
    a named backend that cannot run here is one clear error."""
    if name != "auto" and name not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(backend_names())}, got {name!r}")
    if name == "auto":
        return next((b.name for b in BACKENDS.values() if b.preferred()), "hf")
    problem = BACKENDS[name].missing()
    if problem is not None:
        raise ConfigError(problem)
    return name


def load_engine(
    model_cfg: Any, backend: str, batch_size: int, vllm_cfg: VllmConfig | None = None
) -> Engine:
    """The engine of ``backend`` (already resolved) for ``model_cfg``."""
    return BACKENDS[backend].load(model_cfg, batch_size, vllm_cfg or VllmConfig())


def load_stage_engine(cfg: Any, backend: str, batch_size: int) -> tuple[Engine, bool]:
    """The engine of a probe or an evaluation config (its model and ``vllm`` section) for
    ``backend`` (already resolved), and whether its prompts go through the chat template."""
    engine = load_engine(cfg.model, backend, batch_size, cfg.vllm)
    return engine, engine.chat


def close_engine(engine: Any) -> None:
    """Free what an engine holds (vLLM: its GPU memory and worker processes) once a stage is
    done with it, so the next stage (training) finds the GPU free; engines without a
    ``close`` method hold nothing beyond ordinary objects."""
    close = getattr(engine, "close", None)
    if callable(close):
        close()
