"""The factorised (LoGra) projection of rait.influence: its features against an explicit
Kronecker oracle, its scores against the exact ones, its settings, its resumption; and the
chunk sizing from the device's free memory."""

from __future__ import annotations

import math

import pytest
import torch

import rait.influence as influence
from rait.data.records import QARecord
from rait.errors import ConfigError
from rait.gradients import (
    AdamPreconditioner,
    FactorizedGradients,
    PerSampleGradients,
    collate,
    factor_seed,
    factorized_layer,
)
from rait.influence import (
    FALLBACK_CHUNK_GB,
    MEMORY_RESERVE,
    InfluenceConfig,
    InfluenceSettings,
    compute_influence,
    gradient_examples,
    plan_chunks,
    run_influence,
)
from rait.projection import RademacherProjector
from test_influence import (
    _assert_close,
    _examples,
    _stage_cfg,
    probed,  # noqa: F401  (a fixture)
    reference_gradients,
    warm_model,  # noqa: F401  (a fixture)
)

U = 2.0**-24  # float32's unit roundoff


def gamma(n: int) -> float:
    """Higham's γ_n = n·u / (1 − n·u): a float32 sum of n products, in any order, is off by at
    most γ_n times the sum of the products' magnitudes."""
    return n * U / (1 - n * U)


def _unique_examples(lm, n: int = 30):
    """n distinct questions (no two gradients alike, so no tied scores), µ spread over [0, 1]."""
    records = [
        QARecord(
            id=f"q{i}",
            question=f"Which country has the city number {i * 7 + 3}?",
            answers=("France" if i % 2 else "Chile",),
        )
        for i in range(n)
    ]
    mu = {f"q{i}": (i * 37 % 11) / 10 for i in range(n)}
    return gradient_examples(records, mu, lm.tokenizer, True, 0.5)


def _cache_layer_terms(engine: PerSampleGradients) -> PerSampleGradients:
    """The engine with its forward/backward remembered per batch (the factor matrices change
    from run to run, the layer terms do not): many projections at the cost of one pass."""
    cache: dict = {}
    original = engine.layer_terms

    def cached(batch, ids=None):
        key = tuple(batch["input_ids"].flatten().tolist())
        if key not in cache:
            cache[key] = original(batch, ids)
        return cache[key]

    engine.layer_terms = cached
    return engine


def _spearman(a, b) -> float:
    """Spearman's ρ (no ties): the Pearson correlation of the ranks."""
    ra = a.double().argsort().argsort().double()
    rb = b.double().argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra @ rb) / (ra.norm() * rb.norm()))


# --------------------------------------------------------------------------- the features
@pytest.mark.parametrize("factor_dim", [2, 8])
@pytest.mark.parametrize("order", [None, "project", "gradient"])
def test_factorized_features_equal_the_kronecker_oracle(warm_model, factor_dim, order):  # noqa: F811
    """F = g (P_out ⊗ P_in) / √(k_out k_in) per layer, with g the explicit per-sample gradient.

    Against the same layer terms in float64 the only difference is float32 rounding: each
    feature is a chain of sums over the T tokens, the in inputs and the out outputs, so it is
    off by at most γ_{T+in+out+1} · (Σ_t |δ_t| |a_t|ᵀ) |P_out ⊗ P_in| (Higham's bound, entry by
    entry). Against autograd's per-sample gradients (another forward, another backward) the
    gradients themselves differ by float32 rounding (≤ 1e-5 of the largest, as the exact path is
    tested)."""
    lm, model = warm_model
    examples = _examples(lm)
    engine = PerSampleGradients(model)
    captured = {}
    layer_terms = engine.layer_terms

    def capture(batch, ids=None):
        captured.update(layer_terms(batch, ids))
        return captured

    engine.layer_terms = capture
    fact = FactorizedGradients(engine, factor_dim, seed=3, order=order)
    batch = collate([e.features for e in examples], lm.tokenizer.pad_token_id, "cpu")
    feats, norms = fact(batch)
    tokens = batch["input_ids"].shape[1]
    reference = reference_gradients(model, examples, lm.tokenizer.pad_token_id)
    oracle_norm_sq = torch.zeros(len(examples), dtype=torch.float64)
    expected_dim = 0
    for f in fact.slices:
        activ, delta = (t.double() for t in captured[f.param.module_name])
        n_out, n_in = delta.shape[2], activ.shape[2]
        assert (f.k_out, f.k_in) == (min(n_out, factor_dim), min(n_in, factor_dim))
        p_out, p_in = fact.factor(f.module_index, 1), fact.factor(f.module_index, 0)
        assert (p_out is None) == (n_out <= factor_dim) and (p_in is None) == (n_in <= factor_dim)
        p_out = torch.eye(n_out) if p_out is None else p_out
        p_in = torch.eye(n_in) if p_in is None else p_in
        kron = torch.kron(p_out.double(), p_in.double())
        grad = torch.einsum("bto,bti->boi", delta, activ).reshape(len(examples), -1)
        magnitude = torch.einsum("bto,bti->boi", delta.abs(), activ.abs()).reshape(grad.shape)
        got = feats[:, f.offset : f.offset + f.size].double()
        bound = gamma(tokens + n_in + n_out + 1) * (magnitude @ kron.abs())
        assert bool(((got - grad @ kron).abs() <= bound).all())
        explicit = reference[:, f.param.offset : f.param.offset + f.param.size]
        _assert_close(got, explicit @ kron, 1e-5)
        oracle_norm_sq += grad.pow(2).sum(1)
        expected_dim += f.size
    assert fact.dim == expected_dim == feats.shape[1]
    _assert_close(norms, oracle_norm_sq.sqrt(), 1e-5)
    _assert_close(norms, reference.norm(dim=1), 1e-5)


@pytest.mark.parametrize("order", ["project", "gradient"])
@pytest.mark.parametrize(("tokens", "sides"), [(3, (24, 40)), (50, (24, 40)), (50, (4, 40))])
def test_one_layer_in_either_order(order, tokens, sides):
    """One layer, the two orders, both sides projected or one kept exact, few tokens (the
    norm from the two T × T Gram matrices) or many (from the layer's gradient): the same
    features and norms as the explicit float64 gradient, within Higham's bound."""
    gen = torch.Generator().manual_seed(tokens)
    n_out, n_in = sides
    delta = torch.randn(3, tokens, n_out, generator=gen)
    activ = torch.randn(3, tokens, n_in, generator=gen)
    p_in = torch.randint(0, 2, (n_in, 8), generator=gen).float().mul_(2).sub_(1) / math.sqrt(8)
    p_out = None
    if n_out > 8:
        p_out = torch.randint(0, 2, (n_out, 8), generator=gen).float().mul_(2).sub_(1) / 8**0.5
    feats, sq_norm = factorized_layer(activ, delta, p_in, p_out, order)
    grad = torch.einsum("bto,bti->boi", delta.double(), activ.double())
    magnitude = torch.einsum("bto,bti->boi", delta.double().abs(), activ.double().abs())
    left = torch.eye(n_out, dtype=torch.float64) if p_out is None else p_out.double()
    expected = left.T @ grad @ p_in.double()
    bound = gamma(tokens + n_in + n_out + 1) * (left.abs().T @ magnitude @ p_in.double().abs())
    assert bool(((feats.double().view_as(expected) - expected).abs() <= bound).all())
    norm_terms = tokens * tokens + 2 * tokens + n_out * n_in + n_out + n_in
    norm_bound = gamma(norm_terms) * magnitude.pow(2).sum((1, 2))
    assert bool(((sq_norm.double() - grad.pow(2).sum((1, 2))).abs() <= norm_bound).all())


def test_factor_matrices_are_keyed_by_seed_layer_and_side(warm_model):  # noqa: F811
    _, model = warm_model
    engine = PerSampleGradients(model)
    a = FactorizedGradients(engine, 8, seed=5)
    b = FactorizedGradients(engine, 8, seed=5)
    other = FactorizedGradients(engine, 8, seed=6)
    assert a.factors.keys() == b.factors.keys() and len(a.factors) > 2
    for (index, side), matrix in a.factors.items():
        assert torch.equal(matrix, b.factors[index, side])
        assert not torch.equal(matrix, other.factors[index, side])
        width = matrix.shape[0]
        generated = RademacherProjector(width, 8, factor_seed(5, index, side)).matrix()
        assert torch.equal(matrix, generated / math.sqrt(8))
    assert len({factor_seed(5, i, s) for i, s in a.factors}) == len(a.factors)


def test_factorized_needs_the_plain_gradient(warm_model):  # noqa: F811
    _, model = warm_model
    engine = PerSampleGradients(model)
    engine.preconditioner = AdamPreconditioner(
        torch.zeros(engine.dim), torch.ones(engine.dim), 0.9, 0.999, 1e-8
    )
    with pytest.raises(ConfigError, match="gradient: sgd"):
        FactorizedGradients(engine, 8)
    with pytest.raises(ConfigError, match="factor_dim must be positive"):
        FactorizedGradients(PerSampleGradients(model), 0)


# --------------------------------------------------------------------------- the scores
SEEDS = range(16)


def test_factorized_scores_are_unbiased_estimates_of_the_exact_ones(warm_model):  # noqa: F811
    """Without normalisation a score is a sum of ⟨F(x), F(y)⟩ = ⟨g(x), g(y)⟩ in expectation
    over the factor matrices: over 16 seeds, each score's mean lies within 5 standard errors
    of the exact score (a wrong scale, 1/k instead of 1/√(k_out k_in), misses by far more)."""
    lm, model = warm_model
    examples = _unique_examples(lm)
    engine = _cache_layer_terms(PerSampleGradients(model))
    pad = lm.tokenizer.pad_token_id
    exact = compute_influence(engine, examples, InfluenceSettings("none", normalize=False), pad)
    runs = [
        compute_influence(
            engine,
            examples,
            InfluenceSettings("factorized", normalize=False, seed=s, factor_dim=4),
            pad,
            log=lambda _: None,
        )
        for s in SEEDS
    ]
    for key in ("i_ref", "i_sta"):
        values = torch.stack([getattr(r, key) for r in runs]).double()
        sem = values.std(0) / math.sqrt(len(runs))
        z = (values.mean(0) - getattr(exact, key).double()).abs() / sem
        assert float(z.max()) < 5.0, (key, z)
        assert float(values.std(0).min()) > 0  # the features are projected, not exact


def test_factorized_scores_agree_with_the_exact_ones_better_as_factors_grow(warm_model):  # noqa: F811
    """Spearman's ρ of the factorised I_ref and I_sta against the exact (``projection: none``)
    ones, averaged over 16 seeds of the factor matrices: far above chance (a random ranking
    of n scores has ρ of mean 0 and standard deviation 1/√(n − 1), so the mean of 16 lies
    below 3/√(16 (n − 1)) with probability 0.999), rising with factor_dim by more than twice
    the standard error of the difference, and exact once no side is projected."""
    lm, model = warm_model
    examples = _unique_examples(lm)
    n = len(examples)
    engine = _cache_layer_terms(PerSampleGradients(model))
    pad = lm.tokenizer.pad_token_id
    exact = compute_influence(engine, examples, InfluenceSettings("none", normalize=True), pad)
    chance = 3 / math.sqrt(len(SEEDS) * (n - 1))
    means: dict[str, list[float]] = {"i_ref": [], "i_sta": []}
    sems: dict[str, list[float]] = {"i_ref": [], "i_sta": []}
    for factor_dim in (1, 4, 16):
        rho = {"i_ref": [], "i_sta": []}
        for seed in SEEDS:
            settings = InfluenceSettings("factorized", seed=seed, factor_dim=factor_dim)
            run = compute_influence(engine, examples, settings, pad, log=lambda _: None)
            for key in rho:
                rho[key].append(_spearman(getattr(run, key), getattr(exact, key)))
        for key, values in rho.items():
            values = torch.tensor(values, dtype=torch.float64)
            means[key].append(float(values.mean()))
            sems[key].append(float(values.std() / math.sqrt(len(values))))
    for key in means:
        assert min(means[key]) > chance, (key, means[key], chance)
        for i in range(len(means[key]) - 1):
            gain = means[key][i + 1] - means[key][i]
            assert gain > 2 * math.hypot(sems[key][i], sems[key][i + 1]), (key, means, sems)
    full = compute_influence(
        engine, examples, InfluenceSettings("factorized", factor_dim=64), pad, log=lambda _: None
    )
    assert full.feature_dim == engine.dim  # every side of the tiny model is at most 64 wide
    _assert_close(full.i_ref, exact.i_ref)
    _assert_close(full.i_sta, exact.i_sta)
    _assert_close(full.grad_norm, exact.grad_norm)


@pytest.mark.parametrize("normalize", [True, False])
def test_one_and_two_passes_give_the_same_factorized_scores(warm_model, monkeypatch, normalize):  # noqa: F811
    """Kept features (one pass) or, when the host cannot hold them, two passes: the same
    numbers."""
    lm, model = warm_model
    examples = _examples(lm)
    engine = PerSampleGradients(model)
    pad = lm.tokenizer.pad_token_id
    settings = InfluenceSettings("factorized", normalize=normalize, seed=2, factor_dim=8)
    kept = compute_influence(engine, examples, settings, pad)
    # room for a few rows of F floats, not for the 10 × F features (kept in half the host)
    width = FactorizedGradients(engine, 8).dim
    monkeypatch.setattr(influence, "_host_available", lambda: 40 * width)
    two = compute_influence(engine, examples, settings, pad)
    assert (kept.passes, two.passes) == ((1, 2) if normalize else (2, 2))
    for key in ("i_ref", "i_sta", "grad_norm", "feature_norm"):
        _assert_close(getattr(two, key), getattr(kept, key), 1e-5)
    assert (kept.features is not None) == normalize and two.features is None


@pytest.mark.parametrize("normalize", [True, False])
def test_a_killed_factorized_run_resumes(warm_model, tmp_path, monkeypatch, normalize):  # noqa: F811
    lm, model = warm_model
    examples = _examples(lm)
    engine = PerSampleGradients(model)
    pad = lm.tokenizer.pad_token_id
    width = FactorizedGradients(engine, 8).dim
    settings = InfluenceSettings(
        "factorized", normalize=normalize, batch_size=2, chunk_memory_gb=2 * 4 * width / 2**30,
        factor_dim=8,
    )  # fmt: skip
    full = compute_influence(engine, examples, settings, pad)
    calls = {"n": 0}
    original = PerSampleGradients.layer_terms

    def dying(self, batch, ids=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, batch, ids)

    monkeypatch.setattr(PerSampleGradients, "layer_terms", dying)
    with pytest.raises(KeyboardInterrupt):
        compute_influence(engine, examples, settings, pad, work_dir=tmp_path / "w")
    calls["n"] = -100
    resumed = compute_influence(engine, examples, settings, pad, work_dir=tmp_path / "w")
    passes = 1 if normalize else 2
    assert calls["n"] == -100 + passes * 5 - 2  # the two finished chunks were not redone
    assert torch.equal(resumed.i_ref, full.i_ref) and torch.equal(resumed.i_sta, full.i_sta)


def test_a_resumed_run_keeps_its_chunks_while_they_fit(warm_model, tmp_path, monkeypatch):  # noqa: F811
    """A run killed after two chunks of 2 resumes with them when the device still holds 2
    rows, and starts again in chunks of 1 when it holds only 1: the same numbers both ways."""
    lm, model = warm_model
    examples = _examples(lm)
    engine = PerSampleGradients(model)
    pad = lm.tokenizer.pad_token_id
    settings = InfluenceSettings("none", normalize=True, batch_size=2)
    full = compute_influence(engine, examples, settings, pad)
    row, fixed = 4 * engine.dim, 2 * 4 * engine.dim
    calls = {"n": 0}
    original = PerSampleGradients.__call__

    def dying(self, batch, ids=None, out=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, batch, ids, out)

    for rows, redone in ((2, 5 * 2 - 2), (1, 10 * 2)):
        work = tmp_path / f"w{rows}"
        monkeypatch.setattr(influence, "free_memory", lambda device: (2 * row + fixed) / 0.75)
        monkeypatch.setattr(PerSampleGradients, "__call__", dying)
        calls["n"] = 0
        with pytest.raises(KeyboardInterrupt):
            compute_influence(engine, examples, settings, pad, work_dir=work)
        free = (rows * row + fixed) / 0.75
        monkeypatch.setattr(influence, "free_memory", lambda device, free=free: free)
        calls["n"] = -1000
        resumed = compute_influence(engine, examples, settings, pad, work_dir=work)
        assert calls["n"] == -1000 + redone
        assert resumed.chunks["samples_per_chunk"] == rows
        _assert_close(resumed.i_ref, full.i_ref, 1e-6)
        _assert_close(resumed.i_sta, full.i_sta, 1e-6)


# --------------------------------------------------------------------------- the stage
def test_stage_records_the_factorized_mode(probed, tmp_path):  # noqa: F811
    summary = run_influence(
        _stage_cfg(probed, projection="factorized", factor_dim=8), tmp_path / "f", print
    )
    assert summary["projection"] == "factorized" and summary["factor_dim"] == 8
    assert summary["projection_dim"] is None and summary["passes"] == 1
    assert summary["feature_dim"] < summary["lora_parameters"]
    assert summary["chunks"]["samples_per_pass"] == 4


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"projection": "factorized", "gradient": "adam"}, "needs gradient: sgd"),
        ({"factor_dim": 0}, "factor_dim must be positive"),
        ({"projection": "logra"}, "projection must be one of rademacher, factorized, none"),
    ],
)
def test_impossible_factorized_settings(probed, tmp_path, override, match):  # noqa: F811
    with pytest.raises(ConfigError, match=match):
        run_influence(_stage_cfg(probed, **override), tmp_path / "x", log=lambda _: None)


# --------------------------------------------------------------------------- chunk sizing
MIB = 2**20


def test_chunk_sizing_arithmetic():
    # chunk_memory_gb alone (free memory unknown): 2 GiB of 1 MiB rows
    plan = plan_chunks(MIB, 16, 2.0, None)
    assert (plan.chunk, plan.per_pass, plan.budget_bytes) == (2048, 16, 2 * 2**30)
    # plenty free: chunk_memory_gb decides
    assert plan_chunks(MIB, 16, 2.0, 64 * 2**30).chunk == 2048
    # 8 MiB free: (1 − reserve) · 8 MiB = 6 MiB → 6 rows; the batch of 16 is split into 6s
    assert MEMORY_RESERVE == 0.25
    plan = plan_chunks(MIB, 16, 2.0, 8 * MIB)
    assert (plan.chunk, plan.per_pass) == (6, 6)
    # fixed buffers come off the free memory, not off chunk_memory_gb
    assert plan_chunks(MIB, 16, 2.0, 8 * MIB, fixed_bytes=2 * MIB).chunk == 4
    assert plan_chunks(MIB, 16, 3 * MIB / 2**30, 64 * 2**30, fixed_bytes=2 * MIB).chunk == 3
    # a batch smaller than the chunk is kept whole
    assert plan_chunks(MIB, 4, 2.0, None).per_pass == 4
    # not even one row: one line naming the setting and the numbers
    with pytest.raises(ConfigError, match=r"chunk_memory_gb 2.*1 GiB free.*25% reserve"):
        plan_chunks(2 * 2**30, 16, 2.0, 2**30)
    with pytest.raises(ConfigError, match=r"chunk_memory_gb 0\.001\b"):
        plan_chunks(2 * MIB, 16, 0.001, None)


def test_chunks_default_to_the_free_memory():
    """``chunk_memory_gb`` unset (the default): the free memory alone sizes a chunk, since every
    chunk generates P once more (issue 18: a 2 GiB cap meant 3 samples a chunk at 8B, r 64)."""
    assert InfluenceConfig().chunk_memory_gb is None
    InfluenceConfig(probe="p").validate()  # None is valid
    # 100 GiB free, 640 MiB rows (LLaMA-3-8B, LoRA r 64, 4 · D bytes): ¾ · 100 GiB / 640 MiB = 120
    assert plan_chunks(640 * MIB, 16, None, 100 * 2**30).chunk == 120
    assert plan_chunks(640 * MIB, 16, 2.0, 100 * 2**30).chunk == 3  # the cap, when given
    # nothing known: the fallback budget
    assert plan_chunks(MIB, 16, None, None).budget_bytes == int(FALLBACK_CHUNK_GB * 2**30)
    with pytest.raises(ConfigError, match=r"chunk_memory_gb unset, 1 GiB free"):
        plan_chunks(2 * 2**30, 16, None, 2**30)


def test_chunks_follow_the_free_memory(warm_model, monkeypatch):  # noqa: F811
    """The old rule, ``max(batch_size, chunk_memory_gb / row)``, ran a whole batch whatever
    the memory: now a device with room for 3 gradients runs passes of 3 (the same numbers),
    and one without room for one is a ConfigError before any gradient."""
    lm, model = warm_model
    examples = _examples(lm)
    engine = PerSampleGradients(model)
    pad = lm.tokenizer.pad_token_id
    settings = InfluenceSettings("none", normalize=True, batch_size=8)
    free = compute_influence(engine, examples, settings, pad)
    assert free.chunks["samples_per_pass"] == 8
    seen = []
    original = PerSampleGradients.__call__

    def recording(self, batch, ids=None, out=None):
        seen.append(batch["input_ids"].shape[0])
        return original(self, batch, ids, out)

    monkeypatch.setattr(PerSampleGradients, "__call__", recording)
    row, fixed = 4 * engine.dim, 2 * 4 * engine.dim  # a gradient; the two score directions
    monkeypatch.setattr(influence, "free_memory", lambda device: (3 * row + fixed) / 0.75 + 1)
    tight = compute_influence(engine, examples, settings, pad)
    assert (tight.chunks["samples_per_chunk"], tight.chunks["samples_per_pass"]) == (3, 3)
    assert max(seen) == 3 and sum(seen) == 2 * len(examples)
    _assert_close(tight.i_ref, free.i_ref, 1e-6)
    _assert_close(tight.i_sta, free.i_sta, 1e-6)
    seen.clear()
    monkeypatch.setattr(influence, "free_memory", lambda device: (row + fixed) / 0.75 - 1)
    with pytest.raises(ConfigError, match="chunk_memory_gb"):
        compute_influence(engine, examples, settings, pad)
    assert seen == []
