"""Per-sample gradients of the SFT loss with respect to a model's LoRA parameters, a whole
batch at a time (GRAIT section 5.2; LESS).

The loss of sample i is the token-mean cross-entropy over its answer (completion) tokens,
``L_i = (1/|T_i|) Σ_{t∈T_i} −log p(y_t | y_<t)``, exactly as :mod:`rait.train` trains.

**How.** Every trainable parameter must belong to an ``nn.Linear`` (PEFT's ``lora_A`` and
``lora_B`` are). For a linear layer ``y_t = W a_t (+ b)``, the gradient of ``L_i`` is
``∂L_i/∂W = Σ_t δ_{i,t} a_{i,t}ᵀ`` with ``δ_{i,t} = ∂L_i/∂y_{i,t}`` (and ``Σ_t δ_{i,t}`` for
``b``). One forward pass records each layer's inputs ``a``; one ``autograd.grad`` of
``Σ_i L_i`` w.r.t. the layers' outputs gives every ``δ``; since samples do not interact, the
``δ`` of sample i is that of ``L_i`` alone, and an ``einsum`` over tokens gives the per-sample
gradients of the whole batch at once. Padding sits after each sequence, so causal attention
keeps it out of the real tokens. The model runs in eval mode (no dropout): the gradients are
deterministic.

The flattened gradient follows ``model.named_parameters()`` order over the trainable
parameters, each flattened row-major: the same vector as ``torch.cat([p.grad.flatten() ...])``
after a plain ``backward()``.

**Adam preconditioning** (LESS, ``obtain_gradients_with_adam``): with the warm-up optimizer's
first and second moments ``m``, ``v`` and its ``β1``, ``β2``, ``ε``:
``Γ(g) = m' / √(v' + ε)``, ``m' = β1 m + (1 − β1) g``, ``v' = β2 v + (1 − β2) g²``, as LESS
computes it (no bias correction, ε inside the root).

**Factorised projection** (LoGra, Choe et al. 2024, :class:`FactorizedGradients`): the
gradient of each layer, ``G = Σ_t δ_t a_tᵀ`` (out × in), is projected on both sides by small
seeded Rademacher matrices, ``F = P_outᵀ G P_in / √(k_out k_in) = Σ_t (P_outᵀ δ_t)(P_inᵀ a_t)ᵀ /
√(k_out k_in)`` (k_out × k_in), without forming the (B × D) gradients. A side no larger than
``factor_dim`` is kept exact (P = I, no scaling): for LoRA, ``lora_A`` (r × in) projects its
input side only and ``lora_B`` (out × r) its output side only. As
``vec_row(F) = (P_out ⊗ P_in)ᵀ vec_row(G) / √(k_out k_in)`` and independent Rademacher matrices
have ``E[P Pᵀ] = k I``, ``E⟨F(x), F(y)⟩ = ⟨G(x), G(y)⟩`` for every layer. Each layer is
computed in the cheaper order (projections first, ``T (in k_in + out k_out + k_out k_in)``
operations, or the layer's gradient first, ``T out in + out in k_in + out k_in k_out``; for a
LoRA, whose r is below the number of tokens, usually the latter). ``‖G‖`` is exact (the
Frobenius norm of the layer's gradient, or ``Σ_{t,s} (δ_t·δ_s)(a_t·a_s)`` when cheaper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rait.errors import ConfigError, DataError, Location

FACTOR_ORDERS = ("project", "gradient")


@dataclass(frozen=True)
class ParamSlice:
    """Where a trainable parameter sits in the flattened gradient."""

    name: str
    module_name: str
    kind: str  # "weight" or "bias"
    offset: int
    size: int
    shape: tuple[int, ...]


def trainable_slices(model: Any) -> list[ParamSlice]:
    """The trainable parameters in ``named_parameters()`` order, each with its offset; every
    one must be the weight or bias of an ``nn.Linear``."""
    import torch

    linear_of = {}
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            for kind in ("weight", "bias"):
                param = getattr(module, kind, None)
                if param is not None:
                    linear_of[id(param)] = (module_name, kind)
    slices = []
    offset = 0
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if id(param) not in linear_of:
            raise ConfigError(
                f"trainable parameter {name!r} is not a linear layer's weight or bias: "
                "gradient influence supports LoRA adapters (lora_A / lora_B linear layers)"
            )
        module_name, kind = linear_of[id(param)]
        slices.append(
            ParamSlice(name, module_name, kind, offset, param.numel(), tuple(param.shape))
        )
        offset += param.numel()
    if not slices:
        raise ConfigError("the model has no trainable parameters (load the LoRA as trainable)")
    return slices


def _accepts_logits_to_keep(model: Any) -> bool:
    """Whether the causal LM's ``forward`` can compute logits at chosen positions only."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def sample_losses(model: Any, batch: dict[str, Any]) -> Any:
    """Per-sample token-mean cross-entropy over the completion tokens: (B,).

    The LM head runs only at the positions that predict an answer token of some sample in
    the batch (``logits_to_keep``, where the model supports it): with ~6 answer tokens in a
    ~70-token prompt, this skips most of the vocabulary-sized logits, their log-softmax and
    their backward, and changes no loss (the other positions carry no loss).
    """
    import torch

    ids, attention = batch["input_ids"], batch["attention_mask"]
    targets = batch["completion_mask"][:, 1:].bool()
    if _accepts_logits_to_keep(model):
        positions = targets.any(0).nonzero().flatten()  # position p predicts token p + 1
        logits = model(input_ids=ids, attention_mask=attention, logits_to_keep=positions).logits
    else:
        positions = torch.arange(targets.shape[1], device=ids.device)
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1]
    labels = ids[:, positions + 1]
    mask = targets[:, positions].to(torch.float32)
    per_token = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none"
    ).view(labels.shape)
    return (per_token * mask).sum(1) / mask.sum(1)


def collate(features: list[dict[str, Any]], pad_id: int, device: Any) -> dict[str, Any]:
    """Right-padded tensors of ``input_ids``, ``attention_mask`` and ``completion_mask``."""
    import torch

    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(features), width), dtype=torch.long)
    completion = torch.zeros((len(features), width), dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n] = torch.tensor(f["input_ids"])
        attention[i, :n] = 1
        completion[i, :n] = torch.tensor(f["completion_mask"])
    return {
        "input_ids": ids.to(device),
        "attention_mask": attention.to(device),
        "completion_mask": completion.to(device),
    }


def _rows_buffer(out: Any, size: int, dim: int, device: Any) -> Any:
    """``out`` (rows of a larger buffer, checked to be ``size × dim``) or a new float32 one."""
    import torch

    if out is None:
        return torch.empty(size, dim, dtype=torch.float32, device=device)
    if tuple(out.shape) != (size, dim):
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {(size, dim)}")
    return out


class PerSampleGradients:
    """Per-sample LoRA gradients of a batch as a (B × D) float32 matrix (module docstring)."""

    def __init__(self, model: Any):
        self.model = model
        self.slices = trainable_slices(model)
        self.dim = sum(s.size for s in self.slices)
        modules = dict(model.named_modules())
        self._modules = {s.module_name: modules[s.module_name] for s in self.slices}
        self._inputs: dict[str, Any] = {}
        self._outputs: dict[str, Any] = {}
        self.preconditioner: AdamPreconditioner | None = None

    def _hook(self, name: str):
        def record(module, args, output):
            self._inputs[name] = args[0].detach()
            self._outputs[name] = output

        return record

    def layer_terms(self, batch: dict[str, Any], ids: list[str] | None = None) -> dict[str, Any]:
        """Each adapted layer's inputs ``a`` and output gradients ``δ`` for ``batch``:
        ``{module name: (a (B × T × in), δ (B × T × out))}``, from one forward and one
        ``autograd.grad``; ``ids`` name samples in errors."""
        import torch

        counts = batch["completion_mask"][:, 1:].sum(1)
        if bool((counts == 0).any()):
            bad = int((counts == 0).nonzero()[0])
            name = ids[bad] if ids else f"row {bad}"
            raise DataError(f"sample {name} has no answer tokens: its gradient is undefined")
        handles = [m.register_forward_hook(self._hook(n)) for n, m in self._modules.items()]
        try:
            with torch.enable_grad():
                losses = sample_losses(self.model, batch)
                names = list(self._outputs)
                deltas = torch.autograd.grad(losses.sum(), [self._outputs[n] for n in names])
        finally:
            for handle in handles:
                handle.remove()
        terms = {n: (self._inputs[n], d) for n, d in zip(names, deltas, strict=True)}
        self._inputs.clear()
        self._outputs.clear()
        return terms

    def __call__(self, batch: dict[str, Any], ids: list[str] | None = None, out: Any = None) -> Any:
        """The (B × D) gradients of ``batch`` (written into ``out`` when given: rows of a
        larger buffer, so a chunk of samples is never copied); ``ids`` name samples in errors.
        """
        import torch

        terms = self.layer_terms(batch, ids)
        size = batch["input_ids"].shape[0]
        device = batch["input_ids"].device
        out = _rows_buffer(out, size, self.dim, device)
        for s in self.slices:
            activ, delta = terms[s.module_name]
            delta = delta.float()
            if s.kind == "weight":
                grad = torch.einsum("bto,bti->boi", delta, activ.float()).reshape(size, -1)
            else:
                grad = delta.sum(1)
            out[:, s.offset : s.offset + s.size] = grad
        if self.preconditioner is not None:
            out.copy_(self.preconditioner(out))
        return out


def factor_seed(seed: int, module_index: int, side: int) -> int:
    """The seed of the factor matrix of layer ``module_index``, ``side`` 0 (input) or 1
    (output): 63 bits of NumPy's ``SeedSequence([seed, module_index, side])``, the same on
    every platform."""
    import numpy as np

    state = np.random.SeedSequence([seed, module_index, side]).generate_state(1, np.uint64)
    return int(state[0]) >> 1


@dataclass(frozen=True)
class FactorSlice:
    """Where a parameter's factorised gradient sits in the feature vector: ``k_out × k_in``
    entries from ``offset`` (row-major); ``k_in`` is 1 for a bias."""

    param: ParamSlice
    module_index: int
    offset: int
    k_out: int
    k_in: int

    @property
    def size(self) -> int:
        return self.k_out * self.k_in


def factorized_layer(
    activ: Any, delta: Any, p_in: Any, p_out: Any, order: str | None = None
) -> tuple[Any, Any]:
    """``(P_outᵀ G P_in) (B × k_out k_in, row-major)`` and ``‖G‖² (B,)`` for the layer gradients
    ``G_b = Σ_t δ_{b,t} a_{b,t}ᵀ`` (module docstring); ``p_in``/``p_out``: the scaled factor
    matrices (in × k_in, out × k_out) or None for a side kept exact. ``order``: ``project``
    (projections first, G never formed), ``gradient`` (G first, one layer at a time) or None,
    the cheaper one."""
    import torch

    size, tokens, n_out = delta.shape
    n_in = activ.shape[2]
    k_in = n_in if p_in is None else p_in.shape[1]
    k_out = n_out if p_out is None else p_out.shape[1]
    if order is None:
        first = n_in * k_in * (p_in is not None) + n_out * k_out * (p_out is not None)
        project_cost = tokens * (first + k_out * k_in)
        gradient_cost = (
            tokens * n_out * n_in
            + n_out * n_in * k_in * (p_in is not None)
            + n_out * k_in * k_out * (p_out is not None)
        )
        order = "project" if project_cost < gradient_cost else "gradient"
    if order == "gradient":
        grad = torch.einsum("bto,bti->boi", delta, activ)
        sq_norm = grad.pow(2).sum((1, 2))
        if p_in is not None:
            grad = grad @ p_in
        if p_out is not None:
            grad = p_out.T @ grad
        return grad.reshape(size, -1), sq_norm
    if order != "project":
        raise ValueError(f"order must be one of {FACTOR_ORDERS}, got {order!r}")
    small_a = activ if p_in is None else activ @ p_in
    small_d = delta if p_out is None else delta @ p_out
    feats = torch.einsum("bto,bti->boi", small_d, small_a).reshape(size, -1)
    if tokens * (n_out + n_in) < n_out * n_in:  # the two Gram matrices are smaller than G
        gram = (delta @ delta.transpose(1, 2)) * (activ @ activ.transpose(1, 2))
        sq_norm = gram.sum((1, 2))
    else:
        sq_norm = torch.einsum("bto,bti->boi", delta, activ).pow(2).sum((1, 2))
    return feats, sq_norm


class FactorizedGradients:
    """LoGra's factorised projection of every per-sample LoRA gradient (module docstring): a
    (B × F) float32 feature matrix, F = Σ_layers k_out k_in, and the exact ‖g‖ (B,), from the
    layer terms of a :class:`PerSampleGradients`. Each side larger than ``factor_dim`` is
    projected to ``factor_dim`` by a ±1/√factor_dim matrix generated by
    :class:`rait.projection.RademacherProjector` from :func:`factor_seed` (seed, layer, side)
    (layers numbered in parameter order): reproducible and the same on every device."""

    def __init__(
        self,
        engine: PerSampleGradients,
        factor_dim: int,
        seed: int = 0,
        device: Any = "cpu",
        order: str | None = None,
    ):
        import torch

        from rait.projection import RademacherProjector

        if factor_dim <= 0:
            raise ConfigError(f"factor_dim must be positive, got {factor_dim}")
        if engine.preconditioner is not None:
            raise ConfigError(
                "the factorized projection needs the plain gradient (gradient: sgd): Adam's "
                "preconditioning acts on each entry of the whole gradient"
            )
        if order is not None and order not in FACTOR_ORDERS:
            raise ValueError(f"order must be one of {FACTOR_ORDERS}, got {order!r}")
        self.engine = engine
        self.factor_dim = int(factor_dim)
        self.seed = int(seed)
        self.order = order
        self.gradient_dim = engine.dim
        module_names = list(dict.fromkeys(s.module_name for s in engine.slices))
        self.factors: dict[tuple[int, int], Any] = {}
        self.slices: list[FactorSlice] = []
        offset = 0
        for s in engine.slices:
            index = module_names.index(s.module_name)
            module = engine._modules[s.module_name]
            sides = [(1, module.out_features)]
            if s.kind == "weight":
                sides.append((0, module.in_features))
            for side, width in sides:
                if width > self.factor_dim and (index, side) not in self.factors:
                    matrix = RademacherProjector(
                        width, self.factor_dim, factor_seed(self.seed, index, side), device
                    ).matrix()
                    self.factors[index, side] = matrix.to(torch.float32) / math.sqrt(
                        self.factor_dim
                    )
            k_out = min(module.out_features, self.factor_dim)
            k_in = min(module.in_features, self.factor_dim) if s.kind == "weight" else 1
            self.slices.append(FactorSlice(s, index, offset, k_out, k_in))
            offset += k_out * k_in
        self.dim = offset

    def factor(self, module_index: int, side: int) -> Any:
        """The scaled factor matrix of a layer's input (0) or output (1) side, or None when that
        side is kept exact."""
        return self.factors.get((module_index, side))

    def __call__(
        self, batch: dict[str, Any], ids: list[str] | None = None, out: Any = None
    ) -> tuple[Any, Any]:
        """(B × F) features of ``batch`` (into ``out`` when given) and the exact ‖g‖ (B,)."""
        import torch

        terms = self.engine.layer_terms(batch, ids)
        size = batch["input_ids"].shape[0]
        device = batch["input_ids"].device
        out = _rows_buffer(out, size, self.dim, device)
        sq_norm = torch.zeros(size, dtype=torch.float32, device=device)
        for f in self.slices:
            activ, delta = terms[f.param.module_name]
            delta = delta.float()
            p_out = self.factor(f.module_index, 1)
            if f.param.kind == "weight":
                p_in = self.factor(f.module_index, 0)
                feats, sq = factorized_layer(activ.float(), delta, p_in, p_out, self.order)
            else:
                grad = delta.sum(1)
                sq = grad.pow(2).sum(1)
                feats = grad if p_out is None else grad @ p_out
            out[:, f.offset : f.offset + f.size] = feats
            sq_norm += sq
        return out, sq_norm.sqrt()


class AdamPreconditioner:
    """LESS's Adam feature ``Γ(g) = m' / √(v' + ε)`` (module docstring), from a trainer
    checkpoint's ``optimizer.pt``."""

    def __init__(self, exp_avg: Any, exp_avg_sq: Any, beta1: float, beta2: float, eps: float):
        self.exp_avg = exp_avg
        self.exp_avg_sq = exp_avg_sq
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def __call__(self, grads: Any) -> Any:
        import torch

        m = self.beta1 * self.exp_avg + (1 - self.beta1) * grads
        v = self.beta2 * self.exp_avg_sq + (1 - self.beta2) * grads**2
        return m / torch.sqrt(v + self.eps)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, model: Any) -> AdamPreconditioner:
        """Read ``checkpoint/optimizer.pt`` as the Hugging Face Trainer wrote it for ``model``:
        its parameter groups are the trainable parameters with weight decay, then those
        without, each in ``named_parameters()`` order."""
        import torch
        from transformers import Trainer

        path = Path(checkpoint) / "optimizer.pt"
        if not path.is_file():
            raise ConfigError(
                f"gradient: adam needs the warm-up's optimizer state, and {checkpoint} has no "
                "optimizer.pt: give a trainer checkpoint folder (train/checkpoints/checkpoint-N)"
            )
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DataError(
                f"cannot read the optimizer state ({exc})", Location(str(path))
            ) from None
        decay = set(Trainer.get_decay_parameter_names(None, model))
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        order = [n for n, _ in named if n in decay] + [n for n, _ in named if n not in decay]
        groups = saved.get("param_groups", [])
        indices = [i for g in groups for i in g["params"]]
        if len(indices) != len(order):
            raise DataError(
                f"the optimizer state has {len(indices)} parameters, the warm-up model has "
                f"{len(order)} trainable ones: the checkpoint belongs to another model or adapter",
                Location(str(path)),
            )
        group_of = {i: g for g in groups for i in g["params"]}
        shapes = dict(named)
        first = group_of[indices[0]]
        beta1, beta2 = first.get("betas", (0.9, 0.999))
        eps = first.get("eps", 1e-8)
        state_of = dict(zip(order, indices, strict=True))
        avg, avg_sq = [], []
        for name, param in named:
            state = saved["state"].get(state_of[name])
            if state is None or "exp_avg" not in state:
                raise DataError(
                    f"no Adam moments for {name} (an optimizer other than Adam?)",
                    Location(str(path)),
                )
            if tuple(state["exp_avg"].shape) != tuple(shapes[name].shape):
                raise DataError(
                    f"moment shape {tuple(state['exp_avg'].shape)} ≠ parameter {name} shape "
                    f"{tuple(param.shape)}: the checkpoint belongs to another adapter",
                    Location(str(path)),
                )
            avg.append(state["exp_avg"].flatten().float())
            avg_sq.append(state["exp_avg_sq"].flatten().float())
        device = next(model.parameters()).device
        return cls(
            torch.cat(avg).to(device),
            torch.cat(avg_sq).to(device),
            float(beta1),
            float(beta2),
            float(eps),
        )
