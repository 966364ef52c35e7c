"""Stage 3, ``rait train``: supervised fine-tuning on a built set with TRL and PEFT
(docs/methods.md §6).

* **LoRA** (default; r 64, α 16, dropout 0.1 on every linear layer) or **full** fine-tuning;
  AdamW, lr 2e-4, 3 epochs, cosine schedule with 3% warm-up, effective batch 16 (per-device
  batch × gradient accumulation × processes), max length 2048, gradient clipping 1.0.
* **Loss on the completion only**: the prompt is rendered exactly as ``rait eval`` renders it
  (the chat template with the generation prompt, or plain text), tokenized on its own, and the
  completion's tokens follow it, so training and inference see the same context tokens.
* **Per-sample loss weights at any batch size** (GRAIT eq. 11, docs/methods.md §6). With
  ``L_i = (1/|T_i|) Σ_{t∈T_i} ℓ_it`` the token-mean loss of sample i over its completion
  tokens T_i, the loss of an optimisation step over the B samples of all its micro-batches
  (and processes) is ``L = (1/B) Σ_i w_i L_i`` (``loss_reduction: sample``, the default).
  All-ones weights give exactly the plain mean of per-sample losses. ``loss_reduction:
  token`` weights TRL's token-mean instead, ``L = Σ_i w_i Σ_t ℓ_it / Σ_i |T_i|``; with all-ones
  weights it is exactly TRL's own loss.
* **Checkpoints** every ``save_steps`` steps (and at each epoch end); a killed run resumes from
  the last complete one (optimizer, scheduler, RNG and data order included). A checkpoint cut
  short by a kill or a full disk (no valid ``trainer_state.json``, which the trainer writes
  last) is said, removed and passed over. Each checkpoint also keeps the loss summed over its
  steps, so ``train_loss`` of a resumed run is the mean over the whole run.
* Output: ``OUT/adapter`` (LoRA; ``rait eval --adapter OUT/adapter``, or
  ``PeftModel.from_pretrained(base, OUT/adapter)``) or ``OUT/model`` (full; a plain
  ``AutoModelForCausalLM`` folder), each with the tokenizer; ``OUT/train_summary.json``.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rait.artifacts import (
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    LOSS_FILE,
    MODEL_DIR,
    TRAIN_SUMMARY_FILE,
)
from rait.cliargs import option
from rait.config import config_to_dict
from rait.distributed import Processes
from rait.errors import ConfigError, DataError, Location, RaitError
from rait.fileio import read_json, read_jsonl_rows, write_json
from rait.models import (
    ModelConfig,
    cpu_has_native_bf16,
    load_model,
    render_prompt,
    resolve_device,
)
from rait.rundir import Stage

#: what ``pip install rait[logging]`` brings for each logger of ``report_to``
LOGGER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}
FINETUNING = ("lora", "full")
PRECISIONS = ("auto", "bf16", "fp32")
LOSS_REDUCTIONS = ("sample", "token")


@dataclass
class TrainConfig:
    """Settings of ``rait train`` (defaults: docs/methods.md §6).

    ``data``: a built set (``rait build``) or any JSONL with ``prompt`` and ``completion``
    (TRL's conversational or plain-text form) and an optional ``weight``.
    ``batch_size``: samples per device and micro-batch; gradient accumulation makes up
    ``effective_batch_size`` (which must be a multiple of batch_size × processes).
    ``use_weights``: apply the rows' ``weight`` (off: every weight is 1).
    ``report_to``: ``none``, ``tensorboard``, ``wandb``, ... (the trainer's loggers).
    ``optim``: the trainer's optimizer name (AdamW by default, docs/methods.md §6).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: str | None = option(None, help="a built set (rait build) or prompt/completion JSONL")
    finetuning: str = option("lora", help="LoRA or full fine-tuning", choices=FINETUNING)
    lora_r: int = option(64, help="LoRA rank r")
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    lora_target_modules: str = "all-linear"
    learning_rate: float = option(2e-4, help="peak learning rate")
    epochs: float = option(3.0, help="training epochs")
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    effective_batch_size: int = option(
        16, help="samples per optimizer step (micro-batch × accumulation × processes)"
    )
    batch_size: int = option(8, help="per-device micro-batch")
    max_length: int = 2048
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch"
    loss_reduction: str = "sample"
    use_weights: bool = option(True, help="ignore the weight column")
    gradient_checkpointing: bool = False
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 5
    report_to: str = option("none", help="trainer loggers: none, tensorboard, wandb, ...")
    seed: int = option(0, help="training seed")
    precision: str = option(
        "auto",
        help="bf16 autocast over fp32 weights, or fp32; auto: bf16 on a GPU that supports it "
        "and on a CPU with bf16 instructions (AVX512-BF16, AMX), fp32 elsewhere",
        choices=PRECISIONS,
    )

    def validate(self) -> None:
        checks = [
            (
                self.finetuning in FINETUNING,
                f"finetuning must be one of {', '.join(FINETUNING)}, got {self.finetuning!r}",
            ),
            (
                self.precision in PRECISIONS,
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}",
            ),
            (
                self.loss_reduction in LOSS_REDUCTIONS,
                f"loss_reduction must be one of {', '.join(LOSS_REDUCTIONS)}, "
                f"got {self.loss_reduction!r}",
            ),
            (self.lora_r > 0, f"lora_r must be positive, got {self.lora_r}"),
            (self.lora_alpha > 0, f"lora_alpha must be positive, got {self.lora_alpha}"),
            (
                0 <= self.lora_dropout < 1,
                f"lora_dropout must be in [0, 1): {self.lora_dropout}",
            ),
            (
                self.learning_rate > 0 and math.isfinite(self.learning_rate),
                f"learning_rate must be positive, got {self.learning_rate}",
            ),
            (self.epochs > 0, f"epochs must be positive, got {self.epochs}"),
            (
                0 <= self.warmup_ratio < 1,
                f"warmup_ratio must be in [0, 1): {self.warmup_ratio}",
            ),
            (self.batch_size > 0, f"batch_size must be positive, got {self.batch_size}"),
            (
                self.effective_batch_size > 0,
                f"effective_batch_size must be positive, got {self.effective_batch_size}",
            ),
            (self.max_length > 0, f"max_length must be positive, got {self.max_length}"),
            (self.max_grad_norm > 0, f"max_grad_norm must be positive, got {self.max_grad_norm}"),
            (self.save_steps > 0, f"save_steps must be positive, got {self.save_steps}"),
            (self.logging_steps > 0, f"logging_steps must be positive, got {self.logging_steps}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        self.model.validate()
        self.loggers()

    def loggers(self) -> list[str]:
        """``report_to`` as the trainer's list (``tensorboard,wandb`` → both), each checked to
        be one of the trainer's loggers and installed."""
        names = [n.strip() for n in self.report_to.split(",") if n.strip()]
        if not names:
            raise ConfigError("report_to is empty: use none, tensorboard, wandb, ...")
        if names in (["none"], ["all"]):
            return names
        from transformers.integrations.integration_utils import (
            INTEGRATION_TO_CALLBACK,
            get_available_reporting_integrations,
        )

        available = get_available_reporting_integrations()
        for name in names:
            if name not in INTEGRATION_TO_CALLBACK:
                raise ConfigError(
                    f"report_to: unknown logger {name!r}; known: none, all, "
                    + ", ".join(sorted(INTEGRATION_TO_CALLBACK))
                )
            if name not in available:
                package = LOGGER_PACKAGES.get(name, name)
                raise ConfigError(
                    f"report_to: {name} is not installed: pip install {package}"
                    + (" (or rait[logging])" if name in LOGGER_PACKAGES else "")
                )
        return names

    def accumulation_steps(self, world_size: int = 1) -> int:
        per_step = self.batch_size * world_size
        if self.effective_batch_size % per_step:
            raise ConfigError(
                f"effective_batch_size {self.effective_batch_size} is not a multiple of "
                f"batch_size {self.batch_size} × {world_size} process(es)"
            )
        return self.effective_batch_size // per_step


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class TrainExample:
    """One tokenized sample: the prompt's and the completion's token ids and the weight."""

    id: str
    prompt_ids: list[int]
    completion_ids: list[int]
    weight: float

    def features(self) -> dict[str, Any]:
        return {
            "input_ids": self.prompt_ids + self.completion_ids,
            "completion_mask": [0] * len(self.prompt_ids) + [1] * len(self.completion_ids),
            "weight": self.weight,
        }


def _messages(value: Any, role: str, where: Location) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise DataError("expected a non-empty list of chat messages or a string", where)
    for message in value:
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("role"), str)
            or not isinstance(message.get("content"), str)
        ):
            raise DataError('each message needs a string "role" and "content"', where)
    if value[-1]["role"] != role:
        raise DataError(f"the last message must have role {role!r}", where)
    return value


def read_training_rows(path: str, use_weights: bool = True) -> list[dict[str, Any]]:
    """The rows of a training set, validated: ``prompt`` and ``completion`` as chat messages
    (a prompt ending with a user turn, a completion of one non-empty assistant turn) or as
    strings, a unique ``id`` if present, and a finite ``weight`` ≥ 0 (default 1)."""
    rows = read_jsonl_rows(path, required=("prompt", "completion"))
    seen: dict[str, int] = {}
    conversational = None
    for row in rows:
        line = row["_line"]
        row_id = str(row.get("id", f"line{line}"))
        if row_id in seen:
            raise DataError(
                f"duplicate id {row_id!r} (first on line {seen[row_id]})",
                Location(path, line, field="id"),
            )
        seen[row_id] = line
        row["id"] = row_id
        is_chat = not isinstance(row["prompt"], str)
        if conversational is None:
            conversational = is_chat
        elif conversational != is_chat:
            raise DataError(
                "mixes chat-message and plain-text prompts", Location(path, line, field="prompt")
            )
        if is_chat:
            prompt = _messages(row["prompt"], "user", Location(path, line, field="prompt"))
            if not prompt[-1]["content"].strip():
                raise DataError(
                    "the prompt's user message is empty", Location(path, line, field="prompt")
                )
            where = Location(path, line, field="completion")
            completion = _messages(row["completion"], "assistant", where)
            if len(completion) != 1:
                raise DataError("expected exactly one assistant message", where)
            if not completion[0]["content"].strip():
                raise DataError("the completion is empty", where)
        else:
            if not isinstance(row["completion"], str) or not row["completion"].strip():
                raise DataError(
                    "expected a non-empty string", Location(path, line, field="completion")
                )
            if not row["prompt"].strip():
                raise DataError("the prompt is empty", Location(path, line, field="prompt"))
        weight = row.get("weight", 1.0)
        where = Location(path, line, field="weight")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise DataError(f"expected a number, got {weight!r}", where)
        if not math.isfinite(weight) or weight < 0:
            raise DataError(f"a weight must be finite and >= 0, got {weight}", where)
        row["weight"] = float(weight) if use_weights else 1.0
    if use_weights and not any(row["weight"] > 0 for row in rows):
        raise DataError(
            f"every sample has weight 0: training would not change the model (all {len(rows)} "
            "rows); give some sample a positive weight, or train with use_weights: false",
            Location(path, field="weight"),
        )
    return rows


def completion_text(
    tokenizer: Any,
    prompt: list[dict],
    completion: list[dict],
    chat: bool,
    prompt_text: str | None = None,
) -> str:
    """The text the model must produce after the rendered prompt.

    With a chat template: what the template adds for the assistant turn (e.g.
    ``"Paris<|im_end|>\\n"``), so that the model learns to close its turn. Without: a space,
    the answer and the end-of-sequence token (plain prompts end with ``"Answer:"``).
    ``prompt_text``: the prompt already rendered, when the caller has it."""
    answer = completion[0]["content"]
    if chat:
        if prompt_text is None:
            prompt_text = render_prompt(tokenizer, prompt, chat=True)
        full = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
        if full.startswith(prompt_text) and answer in full[len(prompt_text) :]:
            return full[len(prompt_text) :]
        return answer + (tokenizer.eos_token or "")
    return " " + answer + (tokenizer.eos_token or "\n")


def tokenize_rows(
    rows: list[dict[str, Any]], tokenizer: Any, chat: bool, max_length: int, path: str
) -> list[TrainExample]:
    """Tokenize prompt and completion separately (the prompt exactly as at inference)."""
    examples = []
    for row in rows:
        if isinstance(row["prompt"], str):
            prompt_text, target = row["prompt"], row["completion"]
        else:
            prompt_text = render_prompt(tokenizer, row["prompt"], chat=chat)
            target = completion_text(tokenizer, row["prompt"], row["completion"], chat, prompt_text)
        prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
        if not completion_ids:
            raise DataError(
                "the completion has no tokens", Location(path, row["_line"], field="completion")
            )
        total = len(prompt_ids) + len(completion_ids)
        if total > max_length:
            raise DataError(
                f"{total} tokens, longer than max_length {max_length}: raise max_length or "
                "shorten the prompt",
                Location(path, row["_line"], field="prompt"),
            )
        examples.append(TrainExample(row["id"], prompt_ids, completion_ids, row["weight"]))
    return examples


# --------------------------------------------------------------------------- trainer
def weighted_loss(
    log_probs: Any,
    label_mask: Any,
    weights: Any,
    reduction: str,
    denominator: Any,
) -> Any:
    """The weighted SFT loss of one micro-batch (see the module docstring).

    ``log_probs``/``label_mask``: (batch, length) per-token log-probabilities of the labels
    (zero where masked) and the mask; ``weights``: (batch,). ``sample``: ``Σ_i w_i L_i / D``
    with ``L_i`` the token-mean of sample i and ``D`` the step's sample count; ``token``:
    ``Σ_i w_i Σ_t ℓ_it / D`` with ``D`` the step's token count."""
    import torch

    per_token = -log_probs
    if reduction == "sample":
        tokens = label_mask.sum(dim=-1)
        per_sample = per_token.sum(dim=-1) / tokens.clamp(min=1)
        return (weights.to(per_sample.dtype) * per_sample).sum() / torch.as_tensor(
            denominator, device=per_sample.device
        ).clamp(min=1)
    weighted = weights.to(per_token.dtype)[:, None] * per_token
    return weighted.sum() / torch.as_tensor(denominator, device=per_token.device).clamp(min=1)


class _KeepWeights:
    """Wraps a collator so each batch also carries its samples' ``weight`` tensor."""

    def __init__(self, collator: Any):
        self.collator = collator

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        weights = [float(e.get("weight", 1.0)) for e in examples]
        batch = self.collator([{k: v for k, v in e.items() if k != "weight"} for e in examples])
        batch["weight"] = torch.tensor(weights, dtype=torch.float32)
        return batch


@functools.cache
def weighted_trainer_class():
    """The ``WeightedSFTTrainer`` class: TRL's SFTTrainer with per-sample weights (defined on
    first use, since importing TRL is slow)."""
    import torch
    from trl import SFTTrainer

    class WeightedSFTTrainer(SFTTrainer):
        """``SFTTrainer`` whose loss is a weighted mean of per-sample (or per-token) losses.

        The batch's ``weight`` column survives TRL's column pruning and the collator; the
        loss is :func:`weighted_loss` over TRL's fused per-token log-probabilities, divided
        by the number of samples (or tokens) of the whole optimisation step, counted over
        its micro-batches and processes, so that gradient accumulation and DDP give the same
        update as one big batch.
        """

        def __init__(self, *args: Any, loss_reduction: str = "sample", **kwargs: Any):
            self.loss_reduction = loss_reduction
            self.prior_loss_sum = 0.0  # the loss summed over the steps before a resume
            self._step_samples: int | None = None
            super().__init__(*args, **kwargs)
            if self.args.padding_free or self.args.packing:
                raise ConfigError("per-sample weights need one sample per row: no packing")
            self.data_collator = _KeepWeights(self.data_collator)
            if loss_reduction == "sample":
                # the loss is already the mean over the whole accumulated step
                self.loss_is_scaled_for_ga = True

        def _save_checkpoint(self, model, trial) -> None:
            # the running loss sum goes into the checkpoint first (trainer_state.json, which
            # the trainer writes last, marks the checkpoint complete), so a resumed run can
            # report the mean loss of the whole run, not of its resumed steps only
            step = self.state.global_step
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{step}"
            if self.args.should_save:
                pending = float(self._tr_loss.item()) if hasattr(self, "_tr_loss") else 0.0
                write_json(
                    folder / LOSS_FILE,
                    {
                        "global_step": step,
                        "loss_sum": self.prior_loss_sum + self._total_loss_scalar + pending,
                    },
                )
            super()._save_checkpoint(model, trial)

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            if "weight" not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, "weight"]

        def get_batch_samples(self, epoch_iterator, num_batches, device):
            batch_samples, num_items = super().get_batch_samples(
                epoch_iterator, num_batches, device
            )
            local = sum(int(b["input_ids"].shape[0]) for b in batch_samples)
            count = torch.tensor(local, device=device)
            if self.args.world_size > 1:
                count = self.accelerator.gather(count).sum()
            self._step_samples = int(count)
            return batch_samples, num_items

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            weights = inputs.pop("weight", None)
            if weights is None:
                weights = torch.ones(inputs["input_ids"].shape[0])
            inputs["use_cache"] = False
            outputs = model(**inputs, fused_lm_head=True)
            mask = outputs.label_mask
            world = self.accelerator.num_processes
            if self.loss_reduction == "sample":
                if model.training and self._step_samples is not None:
                    denominator = self._step_samples
                else:
                    denominator, world = mask.shape[0], 1
            else:
                denominator = mask.sum() if num_items_in_batch is None else num_items_in_batch
                if num_items_in_batch is None or not self.args.average_tokens_across_devices:
                    world = 1
            loss = weighted_loss(
                outputs.log_probs, mask, weights.to(mask.device), self.loss_reduction, denominator
            )
            # DDP averages gradients over processes; the denominator already counts them all
            loss = loss * world
            mode = "train" if model.training else "eval"
            valid = mask.sum()
            if outputs.is_top1 is not None and valid > 0:
                self._metrics[mode]["mean_token_accuracy"].append(
                    (outputs.is_top1.sum() / valid).item()
                )
            return (loss, outputs) if return_outputs else loss

    return WeightedSFTTrainer


# --------------------------------------------------------------------------- running
def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint folder ``path`` cannot be resumed from, or None when it is complete.

    The trainer writes ``trainer_state.json`` last, after the weights, the optimizer, the
    scheduler and the RNG states: a checkpoint is complete when that file parses and names
    the folder's own step. A kill or a full disk while the checkpoint was written leaves it
    missing or cut short."""
    state_file = path / "trainer_state.json"
    if not state_file.is_file():
        return "no trainer_state.json: it was cut short while being written"
    try:
        state = read_json(state_file)
    except (OSError, UnicodeDecodeError, ValueError):
        return "trainer_state.json is cut short or unreadable"
    step = int(path.name.split("-")[-1])
    if not isinstance(state, dict) or state.get("global_step") != step:
        return f"trainer_state.json does not record step {step}"
    return None


def _checkpoints(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )


def _latest_checkpoint(folder: Path) -> str | None:
    """The newest complete checkpoint in ``folder`` (incomplete ones are passed over)."""
    found = [p for p in _checkpoints(folder) if checkpoint_problem(p) is None]
    return str(found[-1]) if found else None


def remove_incomplete_checkpoints(folder: Path, log=print) -> list[str]:
    """Delete the checkpoints a kill or a full disk left half-written (so that neither the
    resume nor the trainer's rotation of old checkpoints meets them); returns their names."""
    removed = []
    for path in _checkpoints(folder):
        problem = checkpoint_problem(path)
        if problem is not None:
            log(f"[train] skipping the incomplete checkpoint {path.name} ({problem}): removed")
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def _prior_loss(checkpoint: str | None) -> tuple[float, int]:
    """``(loss summed over the steps, steps)`` recorded in a checkpoint (0, 0 without one).
    A checkpoint written before rait kept its loss sum falls back on its logged losses."""
    if checkpoint is None:
        return 0.0, 0
    path = Path(checkpoint)
    try:
        record = read_json(path / LOSS_FILE)
        return float(record["loss_sum"]), int(record["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        state = read_json(path / "trainer_state.json")
        total, last = 0.0, 0
        for entry in state.get("log_history", []):
            if "loss" in entry and "step" in entry:
                total += float(entry["loss"]) * (int(entry["step"]) - last)
                last = int(entry["step"])
        return total, last


def _load_for_training(cfg: TrainConfig):
    import torch

    lm = load_model(cfg.model)
    model = lm.model
    model.train()
    if cfg.finetuning == "full" and next(model.parameters()).dtype != torch.float32:
        model = model.float()  # full fine-tuning keeps fp32 master weights (bf16 autocast on GPU)
    return lm, model


def training_bf16(cfg: TrainConfig, device: str) -> bool:
    """Whether the training runs in bf16 autocast (weights and optimizer stay fp32)."""
    import torch

    if cfg.precision == "fp32":
        return False
    if device.startswith("cuda"):
        supported = torch.cuda.is_bf16_supported()
    else:
        supported = cfg.precision == "bf16" or cpu_has_native_bf16()
    if cfg.precision == "bf16" and not supported:
        raise ConfigError(f"train.precision is bf16 but {device} does not support bfloat16")
    return supported


def build_trainer(
    cfg: TrainConfig,
    examples: list[TrainExample],
    output_dir: Path,
    lm: Any,
    model: Any,
    weighted: bool = True,
):
    """The TRL trainer for ``examples``: WeightedSFTTrainer, or TRL's plain SFTTrainer with
    ``weighted=False`` (the benchmark's baseline)."""
    import datasets
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()

    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(cfg.model.device)
    bf16 = training_bf16(cfg, device)
    args = SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.accumulation_steps(world),
        max_length=cfg.max_length,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        optim=cfg.optim,
        completion_only_loss=True,
        packing=False,
        activation_checkpointing=cfg.gradient_checkpointing,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        report_to=cfg.loggers(),
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=bf16,
        use_cpu=device == "cpu",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    features = [e.features() for e in examples]
    if not weighted:
        for f in features:
            del f["weight"]
    dataset = Dataset.from_list(features)
    peft_config = None
    if cfg.finetuning == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=cfg.lora_target_modules,
            task_type="CAUSAL_LM",
        )
    kwargs = {
        "model": model,
        "args": args,
        "train_dataset": dataset,
        "processing_class": lm.tokenizer,
        "peft_config": peft_config,
    }
    if weighted:
        return weighted_trainer_class()(loss_reduction=cfg.loss_reduction, **kwargs)
    return SFTTrainer(**kwargs)


def _quiet(*_: Any) -> None:
    pass


def _finish_wandb(cfg: TrainConfig) -> None:
    """Close this training's W&B run (the trainer leaves it open): each training of a
    ``rait run`` is its own W&B run, and an offline run is written out now."""
    if "wandb" in cfg.loggers() or cfg.loggers() == ["all"]:
        import sys

        wandb = sys.modules.get("wandb")
        if wandb is not None and wandb.run is not None:
            wandb.finish()


def train_stage(cfg: TrainConfig, out_dir: str | Path) -> Stage:
    """The training's stage folder and fingerprint: its config and the training set's bytes."""
    return Stage(Path(out_dir), "train", config_to_dict(cfg), [str(cfg.data)])


def run_train(cfg: TrainConfig, out_dir: str | Path, log=print) -> dict[str, Any]:
    """Train on ``cfg.data`` into ``out_dir`` (cached: an unchanged config and data set is not
    trained again; a killed run resumes from its last checkpoint)."""
    cfg.validate()
    if not cfg.data:
        raise ConfigError("train: `data` (a built JSONL set) is required")
    cfg.accumulation_steps(int(os.environ.get("WORLD_SIZE", "1")))
    rows = read_training_rows(str(cfg.data), cfg.use_weights)
    stage = train_stage(cfg, out_dir)
    if stage.is_complete():
        log(f"[train] up to date, skipped ({stage.path})")
        return read_json(stage.path / TRAIN_SUMMARY_FILE)
    # under torchrun/accelerate every rank trains; rank 0 alone prepares and completes the
    # stage folder (a fresh start wipes it, so after the barrier every rank sees the same
    # checkpoints)
    procs = Processes.from_env()
    if not procs.main:
        log = _quiet  # one rank speaks
    with stage.lock(procs.main):
        return _train(cfg, rows, stage, procs, log)


def _train(cfg: TrainConfig, rows: list[dict], stage: Stage, procs: Processes, log) -> dict:
    checkpoints = stage.path / CHECKPOINTS_DIR
    procs.barrier()
    if procs.main:
        stage.begin()
        remove_incomplete_checkpoints(checkpoints, log)
    procs.barrier()
    resume_from = _latest_checkpoint(checkpoints)
    log(f"[train] {'resuming from ' + resume_from if resume_from else 'running'} -> {stage.path}")
    try:
        lm, model = _load_for_training(cfg)
        examples = tokenize_rows(rows, lm.tokenizer, lm.use_chat_template, cfg.max_length, cfg.data)
        trainer = build_trainer(cfg, examples, checkpoints, lm, model)
    except RaitError:
        # a model that does not load, a sample too long: found before any step, so a fresh
        # start leaves no `running` folder behind (a resumed one keeps its checkpoints)
        if procs.main and resume_from is None:
            shutil.rmtree(stage.path, ignore_errors=True)
        raise
    prior_sum, prior_steps = _prior_loss(resume_from)
    trainer.prior_loss_sum = prior_sum
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - started
    steps = trainer.state.global_step
    # the trainer's training_loss is the mean over this call's steps only
    train_loss = (prior_sum + result.training_loss * (steps - prior_steps)) / max(steps, 1)
    _finish_wandb(cfg)
    target = stage.path / (ADAPTER_DIR if cfg.finetuning == "lora" else MODEL_DIR)
    # every rank takes part: under FSDP or DeepSpeed ZeRO-3 the weights are gathered first
    trainer.save_model(str(target))
    if trainer.is_world_process_zero():
        (target / "training_args.bin").unlink(missing_ok=True)  # the checkpoints keep them
        lm.tokenizer.save_pretrained(str(target))
        losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        summary = {
            "n_samples": len(examples),
            "n_van": sum(r.get("kind") == "van" for r in rows),
            "n_idk": sum(r.get("kind") == "idk" for r in rows),
            "weights": {
                "min": min(e.weight for e in examples),
                "max": max(e.weight for e in examples),
                "all_one": all(e.weight == 1.0 for e in examples),
            },
            "finetuning": cfg.finetuning,
            "precision": "bf16" if trainer.args.bf16 else "fp32",
            "processes": trainer.args.world_size,
            "distributed": str(trainer.accelerator.distributed_type.value),
            "steps": trainer.state.global_step,
            "epochs": cfg.epochs,
            "train_loss": train_loss,
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "seconds": round(seconds, 2),
            "samples_per_second": round(len(examples) * cfg.epochs / seconds, 3),
            "resumed_from": resume_from,
            "output": str(target),
            "log_history": trainer.state.log_history,
        }
        write_json(stage.path / TRAIN_SUMMARY_FILE, summary)
        stage.complete({"output": target.name, "summary": TRAIN_SUMMARY_FILE})
    procs.barrier()
    return read_json(stage.path / TRAIN_SUMMARY_FILE)


def format_summary(s: dict) -> str:
    """A finished training's summary in two lines."""
    return (
        f"trained on {s['n_samples']} samples ({s['steps']} steps, {s.get('precision', 'fp32')}, "
        f"{s['seconds']:.0f}s, "
        f"{s['samples_per_second']:.2f} samples/s): mean loss {s['train_loss']:.3f}, first "
        f"logged {s['first_loss']:.3f}, last logged {s['last_loss']:.3f}\n"
        f"model in {s['output']} (rait eval --adapter / --model)"
    )
