"""The seeded dense Rademacher projection of :mod:`rait.projection` (LESS; docs/methods.md §5):
±1 entries, ``f = Pᵀg/√k``, slices that add up to the whole, the adjoint; the counter-based
hash against an independent pure-Python oracle, golden values and block checksums (so every
device projects with the same matrix; on CUDA, when there is one, bit for bit against the CPU);
the rows' independence of the block they are asked in; the Johnson–Lindenstrauss statistics
(mean, E[PᵀP]/D = I, row, lag, 2 × 2 and seed correlations, each within 6 standard deviations
of a fair coin's value) and the errors. Every test runs on the CPU in about a second at most.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rait.projection import (
    _MULTIPLIERS,
    MIX_MULTIPLIERS,
    ROWS_PER_BLOCK,
    SIGNS_PER_DEVICE_BLOCK,
    RademacherProjector,
    block_checksum,
    default_rows_per_block,
    generation_rate,
)

D = 1300  # more than ten blocks of ROWS_PER_BLOCK (128) rows, the last one short
K = 16


def gradients(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, d)))


def reference(projector: RademacherProjector, grads: torch.Tensor) -> torch.Tensor:
    """``G P / √k`` in float64 from the whole matrix."""
    matrix = projector.matrix().to(torch.float64)
    return grads.to(torch.float64) @ matrix / math.sqrt(projector.output_dim)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-6) -> None:
    actual = actual.to(torch.float64)
    assert actual.shape == expected.shape
    if expected.numel() == 0:
        return
    scale = expected.abs().max().item()
    assert (actual - expected).abs().max().item() <= rel * max(scale, 1e-12)


# --------------------------------------------------------------------------- the oracle
# The generator rebuilt from the module docstring alone, in Python integers with explicit
# masks and the constants as printed (unsigned): no torch, no signed-constant trick.
MASK = 2**32 - 1


def oracle_mix(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x7FEB352D) & MASK
    x ^= x >> 15
    x = (x * 0x846CA68B) & MASK
    x ^= x >> 16
    return x


def oracle_absorb(h: int, v: int) -> int:
    return oracle_mix(((h ^ v) + 0x9E3779B9) & MASK)


def oracle_sign(seed: int, row: int, col: int) -> int:
    s_key = oracle_absorb(oracle_absorb(0x243F6A88, seed & MASK), seed >> 32)
    a = oracle_absorb(oracle_absorb(s_key, row & MASK), row >> 32)
    b = oracle_absorb(oracle_absorb(0x85A308D3, col // 32), 0)
    return 1 if (oracle_mix(a ^ b) >> (col % 32)) & 1 else -1


def test_the_oracle_mix_is_the_lowbias32_bijection():
    # a bijection of 32-bit words that moves 0 nowhere and 1 far (so the γ in absorb matters)
    assert oracle_mix(0) == 0
    assert oracle_mix(1) == 0x688990C0
    values = {oracle_mix(x) for x in range(1 << 16)}
    assert len(values) == 1 << 16 and max(values) > 2**31


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**32 - 1, 2**32 + 7, 2**64 - 1])
def test_entries_follow_the_documented_hash(seed):
    """A few hundred entries per seed, at rows and columns across word, block and 2³² bounds."""
    rng = random.Random(seed)
    k = 100  # not a multiple of 32: the last word is cut
    projector = RademacherProjector(2**33, k, seed=seed, rows_per_block=64)
    rows = [0, 1, 127, 128, 129, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**33 - 1]
    rows += [rng.randrange(2**33) for _ in range(6)]
    for row in rows:
        block = projector.rows(row, 1)[0]
        cols = sorted({0, 1, 31, 32, 33, 63, 64, 95, 96, 99, *rng.sample(range(k), 10)})
        assert [int(block[c]) for c in cols] == [oracle_sign(seed, row, c) for c in cols]


def test_a_whole_small_matrix_follows_the_hash():
    for input_dim, output_dim, seed in [(3, 5, 0), (40, 33, 3), (130, 64, 11)]:
        matrix = RademacherProjector(input_dim, output_dim, seed=seed).matrix()
        expected = [[oracle_sign(seed, r, c) for c in range(output_dim)] for r in range(input_dim)]
        assert matrix.int().tolist() == expected


def test_golden_values_pin_the_generator():
    # Golden values: these pin the generator (the hash, its constants, the bit order), so that
    # CPU and GPU runs project with the same matrix. A change here silently changes every
    # influence score: give the new generator a new rait.projection.GENERATOR.
    assert RademacherProjector(1, 16, seed=0).matrix()[0].int().tolist() == [
        -1, -1, -1, -1, 1, -1, -1, 1, 1, -1, -1, 1, -1, -1, -1, 1,
    ]  # fmt: skip
    assert RademacherProjector(1, 16, seed=1).matrix()[0].int().tolist() == [
        1, 1, -1, -1, 1, 1, -1, 1, -1, -1, 1, 1, 1, 1, -1, -1,
    ]  # fmt: skip
    # whole blocks: 128 × 8192 signs of seed 0 block 0, seed 1 block 3, and a cut k
    assert block_checksum(0, 0) == "6ac76c5b92f0e5db"
    assert block_checksum(1, 3) == "c06816e89449e777"
    assert block_checksum(2**64 - 1, 0, 100, rows_per_block=7) == "766329cde7ea90eb"


def test_block_checksum_is_the_hash_of_the_documented_bits():
    """SHA-256 of the block's signs, row-major, 1 for +1, packed 8 to a byte (from the
    oracle here); other seeds, blocks and widths give other checksums."""
    seed, block, k, rows = 5, 2, 13, 3
    bits = [oracle_sign(seed, r, c) > 0 for r in range(block * rows, (block + 1) * rows)
            for c in range(k)]  # fmt: skip
    expected = hashlib.sha256(np.packbits(bits).tobytes()).hexdigest()[:16]
    assert block_checksum(seed, block, k, rows_per_block=rows) == expected
    assert block_checksum(0, 0, 64) != block_checksum(1, 0, 64)
    assert block_checksum(0, 0, 64) != block_checksum(0, 1, 64)
    assert block_checksum(0, 0, 64) != block_checksum(0, 0, 65)


def test_no_intermediate_value_overflows_int64():
    """The multipliers are the documented ones mod 2³² and at most 2³¹ in magnitude, so
    x · c for x < 2³² stays inside int64 (the CPU would wrap silently; C++ promises nothing)."""
    for signed, unsigned in zip(_MULTIPLIERS, MIX_MULTIPLIERS, strict=True):
        assert -(2**31) <= signed < 2**31 and signed % 2**32 == unsigned
        assert (2**32 - 1) * abs(signed) < 2**63


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_block_is_the_cpu_block_bit_for_bit():
    for seed, k, rows in [(0, 8192, 8192), (7, 100, 300), (2**64 - 1, 8192, 1000)]:
        cpu = RademacherProjector(3 * rows, k, seed, rows_per_block=rows)
        gpu = RademacherProjector(3 * rows, k, seed, device="cuda", rows_per_block=rows)
        for block in (0, 2):
            assert torch.equal(gpu.block(block).cpu(), cpu.block(block))
        assert block_checksum(seed, 1, k, "cuda", rows) == block_checksum(seed, 1, k, "cpu", rows)
    assert block_checksum(0, 0, device="cuda") == "6ac76c5b92f0e5db"
    # and its default blocks (SIGNS_PER_DEVICE_BLOCK entries) hold the same rows
    gpu = RademacherProjector(20000, 64, 3, device="cuda")
    assert torch.equal(gpu.matrix().cpu(), RademacherProjector(20000, 64, 3).matrix())


# --------------------------------------------------------------------------- entries, product
def test_entries_are_plus_or_minus_one_and_both_occur():
    matrix = RademacherProjector(D, K, seed=1).matrix()
    assert matrix.shape == (D, K)
    assert matrix.dtype == torch.float32
    assert set(torch.unique(matrix).tolist()) == {-1.0, 1.0}
    # roughly half of each sign (20 800 fair coins: ±4.5 standard deviations)
    assert abs((matrix > 0).double().mean().item() - 0.5) < 0.016


def test_projection_is_g_p_over_sqrt_k():
    projector = RademacherProjector(D, K, seed=2)
    grads = gradients(5, D)
    projected = projector.project(grads)
    assert projected.shape == (5, K)
    assert projected.dtype == torch.float32
    assert_close(projected, reference(projector, grads), rel=2e-6)
    # the 1/√k scale: without it the numbers would be 4 times larger
    unscaled = grads @ projector.matrix().to(torch.float64)
    assert not torch.allclose(projected.double(), unscaled, rtol=0.1)


def test_project_adds_into_out():
    projector = RademacherProjector(D, K, seed=2)
    grads = gradients(3, D)
    start = torch.full((3, K), 2.5)
    out = start.clone()
    returned = projector.project(grads, 0, out=out)
    assert returned is out
    assert_close(out, reference(projector, grads) + 2.5, rel=2e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_projector_has_the_same_signs_and_float32_features(dtype):
    half = RademacherProjector(D, 64, seed=2, dtype=dtype)
    assert half.block(1).dtype == dtype
    assert torch.equal(half.matrix().float(), RademacherProjector(D, 64, seed=2).matrix())
    grads = gradients(3, D)
    projected = half.project(grads)
    assert projected.dtype == torch.float32
    # the gradient rounded to dtype (relative 2⁻⁸ for bf16) and each block's product rounded
    # once: a few units of that, relative to the largest feature
    assert_close(projected, reference(half, grads), rel=0.03)
    back = half.back_project(gradients(2, 64, seed=1))
    assert back.dtype == torch.float32 and back.shape == (2, D)


# --------------------------------------------------------------------------- slices
@functools.cache
def sliced_case() -> tuple[RademacherProjector, torch.Tensor, torch.Tensor]:
    projector = RademacherProjector(D, K, seed=4)
    grads = gradients(3, D, seed=4)
    return projector, grads, reference(projector, grads)


@settings(max_examples=20, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=D), min_size=1, max_size=5))
def test_slices_at_their_offsets_sum_to_the_whole(cuts):
    projector, grads, expected = sliced_case()
    bounds = sorted({0, D, *cuts})
    out = torch.zeros(3, K)
    for a, b in itertools.pairwise(bounds):
        projector.project(grads[:, a:b], a, out=out)
    assert_close(out, expected, rel=2e-6)


R = ROWS_PER_BLOCK


@pytest.mark.parametrize(
    ("a", "b"), [(0, 1), (R - 1, R + 1), (R - 12, 5 * R + 3), (R, 2 * R), (D - 20, D), (7, 8)]
)
def test_a_slice_projects_with_its_own_rows(a, b):
    projector = RademacherProjector(D, K, seed=5)
    grads = gradients(2, b - a, seed=a)
    rows = projector.matrix()[a:b].to(torch.float64)
    expected = grads @ rows / math.sqrt(K)
    assert_close(projector.project(grads, a), expected, rel=2e-6)


def test_a_misplaced_slice_gives_other_numbers():
    projector = RademacherProjector(D, K, seed=5)
    grads = gradients(2, 100)
    assert not torch.allclose(projector.project(grads, 600), projector.project(grads, 601))


# --------------------------------------------------------------------------- adjoint
def test_back_project_is_the_adjoint():
    projector = RademacherProjector(D, K, seed=6)
    g = gradients(4, D, seed=1)
    f = gradients(4, K, seed=2)
    left = (projector.project(g).double() * f).sum(dim=1)
    back = projector.back_project(f)
    assert back.shape == (4, D)
    right = (g * back.double()).sum(dim=1)
    # both sides are exact in float64 but for the float32 roundings of project and
    # back_project, which assert_close bounds by rel·max|value| per entry (rel = 2e-6 below):
    # |left − right| ≤ rel·(Σ_k |f_k|·max|project(g)| + Σ_d |g_d|·max|back_project(f)|)
    projected = projector.project(g).double()
    scale = f.abs().sum(1) * projected.abs().max() + g.abs().sum(1) * back.double().abs().max()
    assert ((left - right).abs() <= 2e-6 * scale).all()
    expected = f @ projector.matrix().to(torch.float64).T / math.sqrt(K)
    assert_close(back, expected, rel=2e-6)


@pytest.mark.parametrize(
    ("offset", "width"), [(0, 1), (500, 30), (R - 1, 5 * R), (D - 276, 276), (3, 0)]
)
def test_back_project_of_a_slice_is_the_slice_of_the_whole(offset, width):
    projector = RademacherProjector(D, K, seed=6)
    f = gradients(3, K, seed=3)
    whole = projector.back_project(f)
    part = projector.back_project(f, offset, width)
    assert part.shape == (3, width)
    # the same sums of k = 16 terms computed with other matrix shapes: within 2e-6 ≥ k·eps
    # of the largest entry, as everywhere in this file (not bit-equal on every machine)
    assert_close(part, whole[:, offset : offset + width].double(), rel=2e-6)


def test_back_project_without_width_runs_to_the_last_row():
    projector = RademacherProjector(D, K, seed=6)
    f = gradients(2, K, seed=4)
    tail = projector.back_project(f, 700)
    assert tail.shape == (2, D - 700)
    assert_close(tail, projector.back_project(f)[:, 700:].double(), rel=2e-6)


# --------------------------------------------------------------------------- seeds, blocks
def test_same_seed_same_matrix_other_seed_other_matrix():
    a = RademacherProjector(D, K, seed=7).matrix()
    b = RademacherProjector(D, K, seed=7).matrix()
    c = RademacherProjector(D, K, seed=8).matrix()
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert (a != c).double().mean().item() > 0.4  # independent, not a shifted copy
    assert not torch.equal(a[:R], a[R : 2 * R])  # block 1 is not a copy of block 0


def test_rows_do_not_depend_on_the_input_dim_the_block_size_or_the_order_blocks_are_asked():
    """Whatever block holds a row, it is the same row: D = 1, 600, 1024, 1025 and 1300 and
    blocks of 1, 7, 128 and 1000 rows share rows; ``rows(a, n)`` is any range of them."""
    big = RademacherProjector(D, K, seed=9).matrix()
    for input_dim in (1, 600, 1024, 1025):
        small = RademacherProjector(input_dim, K, seed=9).matrix()
        assert torch.equal(small, big[:input_dim])
    for rows_per_block in (1, 7, 1000, 4096):
        other = RademacherProjector(D, K, seed=9, rows_per_block=rows_per_block)
        assert torch.equal(other.matrix(), big)
    projector = RademacherProjector(D, K, seed=9)
    assert torch.equal(projector.rows(R - 3, 600), big[R - 3 : R + 597])
    order = [projector.block(b).clone() for b in (2, 0, 1, 0, 2)]
    assert torch.equal(order[0], order[4]) and torch.equal(order[1], order[3])
    assert torch.equal(torch.cat([order[1], order[2], order[0]]), big[: 3 * R])


def test_the_first_columns_do_not_depend_on_k():
    wide = RademacherProjector(300, 8192, seed=3).matrix()
    for k in (1, 31, 32, 33, 100, 4097):
        assert torch.equal(RademacherProjector(300, k, seed=3).matrix(), wide[:, :k])


def test_n_blocks_rounds_up():
    assert RademacherProjector(1, 4).n_blocks == 1
    assert RademacherProjector(ROWS_PER_BLOCK, 4).n_blocks == 1
    assert RademacherProjector(ROWS_PER_BLOCK + 1, 4).n_blocks == 2
    assert RademacherProjector(D, 4).n_blocks == 11
    assert RademacherProjector(D, 4).block(10).shape == (D - 10 * ROWS_PER_BLOCK, 4)
    assert RademacherProjector(D, 4, rows_per_block=1000).n_blocks == 2


def test_block_size_defaults():
    # the CPU's blocks stay in cache; a GPU's hold SIGNS_PER_DEVICE_BLOCK entries
    assert RademacherProjector(D, K).rows_per_block == ROWS_PER_BLOCK
    assert default_rows_per_block("cpu", 8192) == ROWS_PER_BLOCK
    assert default_rows_per_block("cuda", 8192) == SIGNS_PER_DEVICE_BLOCK // 8192 == 8192
    assert default_rows_per_block("cuda:1", 2**30) == ROWS_PER_BLOCK


def test_block_bytes_is_the_work_space_allocated():
    projector = RademacherProjector(D, 100, seed=0)
    projector.block(0)
    allocated = sum(t.numel() * t.element_size() for t in projector._work.values())
    assert projector.block_bytes == allocated == 128 * 4 * (32 * 4 + 48)
    assert RademacherProjector(5, 100, dtype=torch.bfloat16).block_bytes == 5 * 4 * (32 * 2 + 48)


def test_generation_rate_times_distinct_blocks():
    rate = generation_rate("cpu", output_dim=256, blocks=3, rows_per_block=16)
    assert 1e5 < rate < 1e13


# --------------------------------------------------------------------------- statistics
def correlation_bound(n: int) -> float:
    """6 standard deviations of the mean of n independent fair ±1 products."""
    return 6 / math.sqrt(n)


@functools.cache
def square(seed: int) -> torch.Tensor:
    """P[:2048, :4096] in float64, shared by the statistics below."""
    return RademacherProjector(2048, 4096, seed=seed).matrix().double()


def test_entries_have_mean_zero_in_every_bit_position():
    matrix = square(0)
    assert abs(matrix.mean().item()) < correlation_bound(matrix.numel())
    # each of the 32 bits of a hash word, over the 2048 · 128 words
    per_bit = matrix.view(2048, 128, 32).mean(dim=(0, 1))
    assert per_bit.abs().max().item() < correlation_bound(2048 * 128)


@pytest.mark.parametrize("seed", [0, 2**63 + 5])
def test_columns_are_uncorrelated_ptp_over_d_is_the_identity(seed):
    """Off the diagonal, (PᵀP/D)_{ij} is a mean of D fair coins: standard deviation 1/√D."""
    d, k = 2**15, 256
    matrix = RademacherProjector(d, k, seed=seed).matrix().double()
    gram = matrix.T @ matrix / d
    assert torch.equal(gram.diagonal(), torch.ones(k, dtype=torch.float64))
    off = gram - torch.eye(k, dtype=torch.float64)
    assert off.abs().max().item() < correlation_bound(d)
    # and the spread is that of independent coins (not smaller: a degenerate P fails too)
    assert off.square().sum().item() / (k * (k - 1)) * d == pytest.approx(1, rel=0.05)


def test_rows_are_uncorrelated_also_beyond_two_to_the_32():
    k = 2**14
    for first in (0, 2**32 - 100):
        projector = RademacherProjector(2**33, k, seed=1, rows_per_block=256)
        rows = projector.rows(first, 256).double()
        gram = rows @ rows.T / k - torch.eye(256, dtype=torch.float64)
        assert gram.abs().max().item() < correlation_bound(k)


@pytest.mark.parametrize(
    ("dr", "dc"), [(0, 1), (0, 31), (0, 32), (1, 0), (1, 1), (1, 32), (1, -32), (2, 64)]
)
def test_neighbours_and_lags_are_uncorrelated(dr, dc):
    """The mean of P[r, c] · P[r + dr, c + dc] over a 2048 × 4096 matrix."""
    matrix = square(2)
    n_rows, n_cols = matrix.shape
    left = matrix[: n_rows - dr, max(0, -dc) : n_cols - max(0, dc)]
    right = matrix[dr:, max(0, dc) : n_cols + min(0, dc)]
    product = left * right
    assert abs(product.mean().item()) < correlation_bound(product.numel())


@pytest.mark.parametrize(("dr", "dc"), [(1, 1), (1, 32), (3, 100)])
def test_two_by_two_products_are_uncorrelated(dr, dc):
    """P[r,c]·P[r+dr,c]·P[r,c+dc]·P[r+dr,c+dc]: the hash combines row and word keys by xor,
    whose 2 × 2 relations the final mix must hide."""
    m = square(3)
    product = m[:-dr, :-dc] * m[dr:, :-dc] * m[:-dr, dc:] * m[dr:, dc:]
    assert abs(product.mean().item()) < correlation_bound(product.numel())


@pytest.mark.parametrize("other", [1, 2, 2**32, 2**32 + 1, 2**63])
def test_seeds_give_uncorrelated_matrices(other):
    a, b = square(0), square(other)
    assert abs((a * b).mean().item()) < correlation_bound(a.numel())


def test_columns_are_centred_and_norms_are_kept_in_expectation():
    d, k = 512, 4096
    projector = RademacherProjector(d, k, seed=0)
    matrix = projector.matrix().to(torch.float64)
    column_means = matrix.mean(dim=0)
    # each column mean has standard deviation 1/√512 ≈ 0.044; the grand mean 1/√(512·4096)
    assert column_means.abs().max().item() < 6 / math.sqrt(d)
    assert abs(column_means.mean().item()) < 5 / math.sqrt(d * k)
    assert column_means.std().item() == pytest.approx(1 / math.sqrt(d), rel=0.1)
    g = gradients(2, d, seed=12)
    f = projector.project(g).double()
    # E||Pᵀg/√k||² = ||g||², relative spread √(2/k) ≈ 2 %
    assert (f[0] ** 2).sum().item() == pytest.approx((g[0] ** 2).sum().item(), rel=0.08)
    assert (f[1] ** 2).sum().item() == pytest.approx((g[1] ** 2).sum().item(), rel=0.08)
    # and inner products: E⟨f(x), f(y)⟩ = ⟨g(x), g(y)⟩ (error ≈ ||g(x)|| ||g(y)|| / √k)
    error = (f[0] @ f[1]).item() - (g[0] @ g[1]).item()
    assert abs(error) < 5 * g[0].norm().item() * g[1].norm().item() / math.sqrt(k)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("input_dim", "output_dim"), [(0, 4), (-3, 4), (4, 0), (4, -1), (0, 0)])
def test_non_positive_sizes_are_rejected(input_dim, output_dim):
    with pytest.raises(ValueError, match="positive"):
        RademacherProjector(input_dim, output_dim)


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_a_seed_outside_64_bits_is_rejected(seed):
    with pytest.raises(ValueError, match="seed"):
        RademacherProjector(4, 4, seed=seed)


def test_a_non_positive_block_size_is_rejected():
    with pytest.raises(ValueError, match="rows_per_block"):
        RademacherProjector(4, 4, rows_per_block=-2)


@pytest.mark.parametrize(("offset", "width"), [(-1, 5), (1296, 5), (0, D + 1), (D, 1)])
def test_rows_outside_the_input_dim_are_rejected(offset, width):
    projector = RademacherProjector(D, K)
    with pytest.raises(ValueError, match="outside"):
        projector.project(gradients(1, width), offset)
    with pytest.raises(ValueError, match="outside"):
        projector.back_project(gradients(1, K), offset, width)
    with pytest.raises(ValueError, match="outside"):
        projector.rows(offset, width)


@pytest.mark.parametrize(("offset", "width"), [(D + 100, None), (0, -5)])
def test_back_project_from_an_offset_past_the_end_is_rejected(offset, width):
    projector = RademacherProjector(D, K)
    with pytest.raises(ValueError, match="outside"):
        projector.back_project(gradients(1, K), offset, width)


@pytest.mark.parametrize("block", [-1, 11, 100])
def test_a_block_outside_the_matrix_is_an_index_error(block):
    projector = RademacherProjector(D, K)
    with pytest.raises(IndexError, match="outside"):
        projector.block(block)


def test_an_odd_number_of_bits_works():
    projector = RademacherProjector(3, 5, seed=0)
    matrix = projector.matrix()
    assert matrix.shape == (3, 5)
    assert set(torch.unique(matrix).tolist()) <= {-1.0, 1.0}
    g = gradients(2, 3)
    assert_close(projector.project(g), reference(projector, g), rel=2e-6)
    single = RademacherProjector(1, 1, seed=5)
    assert single.matrix().shape == (1, 1)
    assert single.project(torch.tensor([[2.0]])).abs().item() == 2.0
