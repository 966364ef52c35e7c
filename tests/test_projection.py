"""The seeded dense Rademacher projection of :mod:`rait.projection` (LESS; docs/methods.md §5):
±1 entries, ``f = Pᵀg/√k``, slices that add up to the whole, the adjoint, the stream's layout
and golden values (so every device and NumPy version projects with the same matrix), the
Johnson–Lindenstrauss statistics and the errors. Every test runs on the CPU in well under a
second.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rait.projection import ROWS_PER_BLOCK, RademacherProjector

D = 1300  # more than two blocks: 512 + 512 + 276 rows
K = 16


def gradients(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, d)))


def reference(projector: RademacherProjector, grads: torch.Tensor) -> torch.Tensor:
    """``G P / √k`` in float64 from the whole matrix."""
    matrix = projector.matrix().to(torch.float64)
    return grads.to(torch.float64) @ matrix / math.sqrt(projector.output_dim)


def numpy_matrix(input_dim: int, output_dim: int, seed: int) -> np.ndarray:
    """P rebuilt from the documented stream alone: block ``b`` is
    ``PCG64(SeedSequence([seed, b]))``'s raw 64-bit words, read least significant bit first,
    bit ``j`` = row ``j // k``, column ``j % k``; 1 → +1, 0 → −1."""
    rows = []
    for block in range(-(-input_dim // ROWS_PER_BLOCK)):
        n_rows = min(ROWS_PER_BLOCK, input_dim - block * ROWS_PER_BLOCK)
        n_bits = n_rows * output_dim
        stream = np.random.PCG64(np.random.SeedSequence([seed, block]))
        words = stream.random_raw(-(-n_bits // 64)).astype("<u8")
        bits = np.unpackbits(words.view(np.uint8), bitorder="little")[:n_bits]
        rows.append(bits.reshape(n_rows, output_dim).astype(np.int64) * 2 - 1)
    return np.concatenate(rows)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-6) -> None:
    actual = actual.to(torch.float64)
    assert actual.shape == expected.shape
    if expected.numel() == 0:
        return
    scale = expected.abs().max().item()
    assert (actual - expected).abs().max().item() <= rel * max(scale, 1e-12)


# --------------------------------------------------------------------------- entries, product
def test_entries_are_plus_or_minus_one_and_both_occur():
    matrix = RademacherProjector(D, K, seed=1).matrix()
    assert matrix.shape == (D, K)
    assert matrix.dtype == torch.float32
    assert set(torch.unique(matrix).tolist()) == {-1.0, 1.0}
    # roughly half of each sign (20 800 fair coins: ±4.5 standard deviations)
    assert abs((matrix > 0).double().mean().item() - 0.5) < 0.016


def test_matrix_follows_the_documented_stream_bit_for_bit():
    for input_dim, output_dim, seed in [(D, K, 0), (D, 100, 3), (3, 5, 0), (513, 7, 11)]:
        projector = RademacherProjector(input_dim, output_dim, seed=seed)
        expected = numpy_matrix(input_dim, output_dim, seed)
        assert np.array_equal(projector.matrix().numpy().astype(np.int64), expected)


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


@pytest.mark.parametrize(
    ("a", "b"),
    [(0, 1), (511, 513), (500, 1100), (ROWS_PER_BLOCK, 2 * ROWS_PER_BLOCK), (1023, D), (7, 8)],
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


@pytest.mark.parametrize(("offset", "width"), [(0, 1), (500, 30), (511, 600), (1024, 276), (3, 0)])
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
    # each block has its own stream: block 1 is not a copy of block 0
    assert not torch.equal(a[:ROWS_PER_BLOCK], a[ROWS_PER_BLOCK : 2 * ROWS_PER_BLOCK])


def test_rows_do_not_depend_on_the_input_dim_or_the_order_blocks_are_asked():
    """A short last block is the start of the full block: D = 600, 1024 and 1300 share rows."""
    big = RademacherProjector(D, K, seed=9).matrix()
    for input_dim in (1, 600, 1024, 1025):
        small = RademacherProjector(input_dim, K, seed=9).matrix()
        assert torch.equal(small, big[:input_dim])
    projector = RademacherProjector(D, K, seed=9)
    order = [projector.block(b).clone() for b in (2, 0, 1, 0, 2)]
    assert torch.equal(order[0], order[4]) and torch.equal(order[1], order[3])
    assert torch.equal(torch.cat([order[1], order[2], order[0]]), big)


def test_golden_values_pin_the_stream():
    # Golden values: these pin the generator (PCG64 raw words, SeedSequence([seed, block]),
    # least-significant bit first), so that CPU and GPU runs and every NumPy version project
    # with the same matrix. A change here silently changes every influence score.
    matrix = RademacherProjector(1300, 100, seed=3).matrix()
    assert matrix[:2, :8].tolist() == [
        [-1, -1, -1, 1, 1, 1, 1, 1],
        [-1, -1, -1, -1, 1, -1, 1, 1],
    ]


def test_n_blocks_rounds_up():
    assert RademacherProjector(1, 4).n_blocks == 1
    assert RademacherProjector(ROWS_PER_BLOCK, 4).n_blocks == 1
    assert RademacherProjector(ROWS_PER_BLOCK + 1, 4).n_blocks == 2
    assert RademacherProjector(D, 4).n_blocks == 3
    assert RademacherProjector(D, 4).block(2).shape == (D - 2 * ROWS_PER_BLOCK, 4)


# --------------------------------------------------------------------------- statistics
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


@pytest.mark.parametrize(("offset", "width"), [(-1, 5), (1296, 5), (0, D + 1), (D, 1)])
def test_rows_outside_the_input_dim_are_rejected(offset, width):
    projector = RademacherProjector(D, K)
    with pytest.raises(ValueError, match="outside"):
        projector.project(gradients(1, width), offset)
    with pytest.raises(ValueError, match="outside"):
        projector.back_project(gradients(1, K), offset, width)


@pytest.mark.parametrize(("offset", "width"), [(D + 100, None), (0, -5)])
def test_back_project_from_an_offset_past_the_end_is_rejected(offset, width):
    projector = RademacherProjector(D, K)
    with pytest.raises(ValueError, match="outside"):
        projector.back_project(gradients(1, K), offset, width)


@pytest.mark.parametrize("block", [-1, 3, 100])
def test_a_block_outside_the_matrix_is_an_index_error(block):
    projector = RademacherProjector(D, K)
    with pytest.raises(IndexError, match="outside"):
        projector.block(block)


def test_an_odd_number_of_bits_works():
    projector = RademacherProjector(3, 5, seed=0)
    matrix = projector.matrix()
    assert matrix.shape == (3, 5)
    assert set(torch.unique(matrix).tolist()) <= {-1.0, 1.0}
    assert np.array_equal(matrix.numpy().astype(np.int64), numpy_matrix(3, 5, 0))
    g = gradients(2, 3)
    assert_close(projector.project(g), reference(projector, g), rel=2e-6)
    single = RademacherProjector(1, 1, seed=5)
    assert single.matrix().shape == (1, 1)
    assert single.project(torch.tensor([[2.0]])).abs().item() == 2.0
