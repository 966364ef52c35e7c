"""Shared fixtures. Tests never touch the network: the hub is switched off here."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the suite's own registry of rait processes (rait.threads): other rait processes on this
# machine do not change its thread counts
os.environ.setdefault("RAIT_THREADS_DIR", tempfile.mkdtemp(prefix="rait-test-threads-"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Llama with its tokenizer saved as a Hugging Face folder."""
    from rait.models import build_tiny_model

    lm = build_tiny_model(seed=0)
    path = tmp_path_factory.mktemp("tiny-llama")
    lm.model.save_pretrained(path)
    lm.tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def offline_cache(tmp_path_factory):
    """One RAIT_CACHE for the slow tests, so the GGUF is converted once per session."""
    path = tmp_path_factory.mktemp("rait-cache")
    return path
