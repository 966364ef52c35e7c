"""A seeded dense Rademacher random projection, generated where the product runs and the same
bit for bit on every device (LESS, Xia et al. 2024; Johnson–Lindenstrauss).

A gradient ``g ∈ R^D`` becomes the feature ``f = Pᵀ g / √k ∈ R^k`` with ``P ∈ {−1, +1}^{D×k}``
dense, entries independent-looking and equally likely, so that ``E[P Pᵀ] = k·I`` and
``E⟨f(x), f(y)⟩ = ⟨g(x), g(y)⟩`` (relative error ≈ 1/√k).

**The generator.** ``P`` is never held whole (D × k is 1.4 · 10¹² entries for a rank-64 LoRA of
LLaMA-3-8B): it is a function of ``(seed, row, column)`` alone, a counter-based hash evaluated a
block of rows at a time on the projector's device. Each 32 columns of a row are one hash word::

    P[r, c] = +1 if bit (c mod 32) of H(seed, r, ⌊c/32⌋) is 1, else −1
    H(s, r, w) = mix(a_r ⊕ b_w)                                 (one mix per 32 entries)
    a_r = absorb(absorb(s_key, r mod 2³²), ⌊r/2³²⌋)             (per row)
    s_key = absorb(absorb(IV, s mod 2³²), ⌊s/2³²⌋),  0 ≤ s < 2⁶⁴  (per seed)
    b_w = absorb(absorb(IV_W, w), 0)                            (per word of a row)
    absorb(h, v) = mix((h ⊕ v) + γ mod 2³²)
    mix(x) = x ^= x >> 16; x = x·0x7FEB352D mod 2³²; x ^= x >> 15;
             x = x·0x846CA68B mod 2³²; x ^= x >> 16            (Wellons' "lowbias32")

with γ = 0x9E3779B9, IV = 0x243F6A88, IV_W = 0x85A308D3. ``mix`` is a bijection of 32-bit words
with near-ideal avalanche; every input passes at least one mix before the grid's, so two rows
(or two seeds, or two words) differ by a pseudo-random 32-bit key difference, never by a shift
of one another (the entry, row, column, lag, 2 × 2 and seed correlations are tested against
their 1/√n spread; with a weaker final mix they fail). A row's entries do not
depend on the block it is asked in, the block size, ``D`` or ``k`` (P for ``k`` columns is the
first ``k`` columns of P for a larger ``k``), so the block size is a speed setting only.
The former stream (NumPy PCG64 per block of 512 rows, drawn on the CPU) is not kept: it is
sequential and CPU-only, and reproducing it on a GPU would mean PCG64 and SeedSequence in
128-bit arithmetic. Features, and so influence scores, computed before :data:`GENERATOR` are
therefore not comparable with those computed after it.

**Why a CPU and a GPU give the same P.** The hash uses integer tensor operations only (xor,
shifts, ``&``, addition, multiplication by a constant; no floating point, no RNG, no
device-specific branch) on 32-bit values held in int64 tensors, in which **nothing overflows**:
a value ``x < 2³²`` times a constant written as a signed 32-bit number (``|c| ≤ 2³¹``,
0x846CA68B as 0x846CA68B − 2³²) has ``|x·c| < 2⁶³``, and ``& (2³² − 1)`` of it is exactly
``x·c mod 2³²`` (two's complement); sums stay below 2³³, and every value shifted right is
non-negative, so torch's arithmetic shift is the logical one. Each operation thus has one
defined result on every device and backend; the words are then cut into bytes, and each byte
copies its 8 signs (least significant bit first) from an exact 256 × 8 ±1 table
(``index_select``) straight into the block, in the product's dtype. A 64-bit hash
(splitmix64) would halve the hash's cost, but needs wrap-around signed 64-bit multiplication,
which CPU and CUDA kernels do in practice and C++ does not promise; on the CPU the byte-to-sign
copy, not the hash, is the bottleneck. :func:`block_checksum` prints a device's block for
comparison with the CPU's pinned value, :func:`generation_rate` times :meth:`block`.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

ROWS_PER_BLOCK = 128
"""Rows per generated block on the CPU (a 4 MiB float32 block at k = 8192, which stays in
cache for the product); other devices take :data:`SIGNS_PER_DEVICE_BLOCK` entries a block."""
SIGNS_PER_DEVICE_BLOCK = 2**26
"""Entries per block off the CPU (256 MiB in float32, plus 96 MiB of integer work space):
enough that the kernel launches do not count."""

GENERATOR = "lowbias32-v1"
"""Names the way P is generated (module docstring): stored results made with another P do not
mix with these (the NumPy PCG64 stream before it had no name)."""
KEY_ROWS = 2**16
"""Row keys computed at a time (512 KiB of int64)."""

MASK32 = 0xFFFFFFFF
GAMMA = 0x9E3779B9  # ⌊2³² / φ⌋, added in every absorb so that zero inputs do not stay zero
SEED_IV = 0x243F6A88  # the first fraction digits of π
WORD_IV = 0x85A308D3  # the next ones
MIX_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)
MIX_SHIFTS = (16, 15, 16)
WORD_BITS = 32


def block_work_bytes(rows: int, output_dim: int, itemsize: int = 4) -> int:
    """Memory of a block of ``rows`` rows of P and its work space, allocated at the first
    block: ``rows · ⌈k/32⌉ · (32 · itemsize + 48)`` bytes (the signs, and per 32-bit word an
    int64 word, its scratch copy and 4 int64 byte indices; 5.5 bytes an entry in float32)."""
    return rows * -(-output_dim // WORD_BITS) * (WORD_BITS * itemsize + 8 + 8 + 32)


def _signed32(c: int) -> int:
    """``c`` (in [0, 2³²)) as the signed 32-bit number with the same residue mod 2³²."""
    return c - (1 << 32) if c >= 1 << 31 else c


_MULTIPLIERS = tuple(_signed32(c) for c in MIX_MULTIPLIERS)


def _mix_(x: Any, scratch: Any) -> Any:
    """lowbias32 in place on an int64 tensor of values in [0, 2³²) (module docstring);
    ``scratch`` is a tensor of the same shape for the shifted copies."""
    import torch

    for i, shift in enumerate(MIX_SHIFTS):
        x.bitwise_xor_(torch.bitwise_right_shift(x, shift, out=scratch))
        if i < len(_MULTIPLIERS):
            x.mul_(_MULTIPLIERS[i]).bitwise_and_(MASK32)
    return x


def _absorb_(h: Any, v: Any, scratch: Any) -> Any:
    """``h ← mix((h ⊕ v) + γ mod 2³²)`` in place (``v``: tensor or int in [0, 2³²))."""
    h.bitwise_xor_(v).add_(GAMMA).bitwise_and_(MASK32)
    return _mix_(h, scratch)


def _seed_key(seed: int) -> int:
    """``absorb(absorb(IV, seed mod 2³²), ⌊seed / 2³²⌋)``, computed by the same tensor code."""
    import torch

    h = torch.tensor([SEED_IV], dtype=torch.int64)
    scratch = torch.empty_like(h)
    _absorb_(h, seed & MASK32, scratch)
    _absorb_(h, seed >> 32, scratch)
    return int(h.item())


def _row_keys(seed_key: int, first: int, count: int, device: Any) -> Any:
    """``a_r`` for the rows ``[first, first + count)`` (int64, values in [0, 2³²))."""
    import torch

    rows = torch.arange(first, first + count, dtype=torch.int64, device=device)
    keys = torch.full_like(rows, seed_key)
    scratch = torch.empty_like(rows)
    _absorb_(keys, rows & MASK32, scratch)
    return _absorb_(keys, rows >> 32, scratch)


def _word_keys(n_words: int, device: Any) -> Any:
    """``b_w`` for the words ``0 .. n_words − 1`` of every row."""
    import torch

    words = torch.arange(n_words, dtype=torch.int64, device=device)
    keys = torch.full_like(words, WORD_IV)
    scratch = torch.empty_like(words)
    _absorb_(keys, words, scratch)
    return _absorb_(keys, 0, scratch)


def _sign_table(dtype: Any, device: Any) -> Any:
    """Row ``v``: the 8 signs of the byte ``v``, least significant bit first (1 → +1)."""
    import torch

    byte = torch.arange(256, dtype=torch.int64)
    signs = ((byte[:, None] >> torch.arange(8)) & 1) * 2 - 1
    return signs.to(device=device, dtype=dtype)


def default_rows_per_block(device: Any, output_dim: int) -> int:
    """:data:`ROWS_PER_BLOCK` on the CPU, :data:`SIGNS_PER_DEVICE_BLOCK` / k rows elsewhere."""
    import torch

    if torch.device(device).type == "cpu":
        return ROWS_PER_BLOCK
    return max(ROWS_PER_BLOCK, SIGNS_PER_DEVICE_BLOCK // output_dim)


class RademacherProjector:
    """``f = Pᵀ g / √k`` for a D-dimensional ``g`` (see the module docstring).

    ``project(G, row_offset)`` projects the rows ``[row_offset, row_offset + G.shape[1])`` of a
    larger gradient (a parameter's slice), so per-parameter contributions can be summed.
    ``dtype`` is that of P and of the product (float32; bfloat16 or float16 halve the memory
    traffic on a GPU, the features are float32 either way); ``rows_per_block`` only sets the
    speed (:func:`default_rows_per_block`), never the numbers.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int = 8192,
        seed: int = 0,
        device: Any = "cpu",
        dtype: Any = None,
        rows_per_block: int | None = None,
    ):
        import torch

        if input_dim <= 0 or output_dim <= 0:
            raise ValueError(f"projection sizes must be positive, got {input_dim} → {output_dim}")
        if not 0 <= int(seed) < 2**64:
            raise ValueError(f"projection seed must be in [0, 2**64), got {seed}")
        if rows_per_block is not None and rows_per_block <= 0:
            raise ValueError(f"rows_per_block must be positive, got {rows_per_block}")
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.dtype = torch.float32 if dtype is None else dtype
        self.rows_per_block = int(
            rows_per_block or default_rows_per_block(self.device, self.output_dim)
        )
        self.scale = 1.0 / math.sqrt(self.output_dim)
        self._n_words = -(-self.output_dim // WORD_BITS)
        self._seed_key = _seed_key(self.seed)
        self._word_keys = _word_keys(self._n_words, self.device)
        self._table = _sign_table(self.dtype, self.device)
        self._byte_shifts = torch.arange(0, WORD_BITS, 8, dtype=torch.int64, device=self.device)
        self._row_key_cache: tuple[int, Any] = (0, self._word_keys[:0])
        self._work: dict[str, Any] | None = None  # one block's buffers, reused by every block
        self._cached: tuple[int, Any] | None = None

    @property
    def block_bytes(self) -> int:
        """Device memory of one block and its work space (:func:`block_work_bytes`)."""
        import torch

        itemsize = torch.empty((), dtype=self.dtype).element_size()
        rows = min(self.rows_per_block, self.input_dim)
        return block_work_bytes(rows, self.output_dim, itemsize)

    @property
    def n_blocks(self) -> int:
        return -(-self.input_dim // self.rows_per_block)

    def _work_space(self, rows: int) -> dict[str, Any]:
        import torch

        grid = (rows, self._n_words)
        return {
            "words": torch.empty(grid, dtype=torch.int64, device=self.device),
            "scratch": torch.empty(grid, dtype=torch.int64, device=self.device),
            "bytes": torch.empty((*grid, 4), dtype=torch.int64, device=self.device),
            "signs": torch.empty((rows, grid[1] * WORD_BITS), dtype=self.dtype, device=self.device),
        }

    def _generate(self, first: int, count: int, work: dict[str, Any]) -> Any:
        """``P[first : first + count]`` written into ``work`` (module docstring)."""
        import torch

        words, scratch = work["words"][:count], work["scratch"][:count]
        bytes_, signs = work["bytes"][:count], work["signs"][:count]
        torch.bitwise_xor(self._keys(first, count)[:, None], self._word_keys[None, :], out=words)
        _mix_(words, scratch)
        torch.bitwise_right_shift(words[:, :, None], self._byte_shifts, out=bytes_)
        bytes_.bitwise_and_(0xFF)
        torch.index_select(self._table, 0, bytes_.view(-1), out=signs.view(-1, 8))
        return signs[:, : self.output_dim]

    def _keys(self, first: int, count: int) -> Any:
        """The row keys ``a_r`` of ``[first, first + count)``, from a cache computed
        :data:`KEY_ROWS` rows at a time (a few dozen small operations per call otherwise)."""
        cached_first, keys = self._row_key_cache
        if not (cached_first <= first and first + count <= cached_first + len(keys)):
            size = max(count, min(KEY_ROWS, self.input_dim - first))
            keys = _row_keys(self._seed_key, first, size, self.device)
            self._row_key_cache = cached_first, keys = first, keys
        return keys[first - cached_first : first - cached_first + count]

    def rows(self, first: int, count: int) -> Any:
        """``P[first : first + count]`` (count × k, ±1, ``dtype``), a new tensor generated on
        the device: any row range, with the same numbers as the blocks that hold it."""
        self._check_range(first, count)
        return self._generate(first, count, self._work_space(count))

    def block(self, block: int) -> Any:
        """Rows ``[block · R, (block + 1) · R)`` of P (R = ``rows_per_block``) as a (rows × k)
        ±1 tensor of ``dtype``: the unit of generation (time it to time the generator).

        The tensor lives in a buffer that the next call for another block overwrites (one
        allocation for the whole projection, and it stays warm in memory): clone it to keep it.
        """
        if self._cached is not None and self._cached[0] == block:
            return self._cached[1]
        if not 0 <= block < self.n_blocks:
            raise IndexError(f"block {block} outside 0..{self.n_blocks - 1}")
        first = block * self.rows_per_block
        count = min(self.rows_per_block, self.input_dim - first)
        if self._work is None:
            self._work = self._work_space(min(self.rows_per_block, self.input_dim))
        self._cached = None  # the buffer is about to change
        matrix = self._generate(first, count, self._work)
        self._cached = (block, matrix)
        return matrix

    def _segments(self, start: int, stop: int):
        """(block, first row in block, last row in block, offset into the slice) covering
        the rows [start, stop)."""
        row, size = start, self.rows_per_block
        while row < stop:
            block = row // size
            lo = row - block * size
            hi = min(size, stop - block * size)
            yield block, lo, hi, row - start
            row = block * size + hi

    def _check_range(self, start: int, width: int) -> None:
        if start < 0 or width < 0 or start + width > self.input_dim:
            raise ValueError(
                f"rows {start}..{start + width} outside the projector's {self.input_dim} rows"
            )

    def project(self, grads: Any, row_offset: int = 0, out: Any = None) -> Any:
        """``grads[:, j]`` is gradient row ``row_offset + j``; returns (n × k) float32
        ``grads P_rows / √k`` for those rows, added into ``out`` when given."""
        import torch

        grads = grads.to(device=self.device, dtype=self.dtype)
        self._check_range(row_offset, grads.shape[1])
        if out is None:
            out = torch.zeros(grads.shape[0], self.output_dim, device=self.device)
        for block, lo, hi, at in self._segments(row_offset, row_offset + grads.shape[1]):
            part, rows = grads[:, at : at + hi - lo], self.block(block)[lo:hi]
            if self.dtype == out.dtype:
                out.addmm_(part, rows, alpha=self.scale)
            else:
                out.add_(part @ rows, alpha=self.scale)
        return out

    def back_project(self, features: Any, row_offset: int = 0, width: int | None = None) -> Any:
        """``features P_rowsᵀ / √k`` (n × width, float32): maps k-dimensional features back to
        gradient space, so that ``⟨g, back_project(f)⟩ = ⟨project(g), f⟩``."""
        import torch

        features = features.to(device=self.device, dtype=self.dtype)
        width = self.input_dim - row_offset if width is None else width
        self._check_range(row_offset, width)
        out = torch.empty(features.shape[0], width, device=self.device)
        for block, lo, hi, at in self._segments(row_offset, row_offset + width):
            out[:, at : at + hi - lo] = (features @ self.block(block)[lo:hi].T) * self.scale
        return out

    def matrix(self) -> Any:
        """The whole P (D × k, ±1): for tests and small D only."""
        import torch

        return torch.cat([self.block(b).clone() for b in range(self.n_blocks)])


def block_checksum(
    seed: int = 0,
    block: int = 0,
    output_dim: int = 8192,
    device: Any = "cpu",
    rows_per_block: int = ROWS_PER_BLOCK,
) -> str:
    """SHA-256 (first 16 hex digits) of the sign bits of rows ``[block · R, (block + 1) · R)``
    of P generated on ``device``, row-major, 1 for +1, packed 8 to a byte (NumPy
    ``packbits``). Equal on every device by construction: a GPU check prints it and compares
    with the CPU's value that ``tests/test_projection.py`` pins."""
    import numpy as np

    projector = RademacherProjector(
        (block + 1) * rows_per_block, output_dim, seed, device, rows_per_block=rows_per_block
    )
    bits = (projector.block(block) > 0).cpu().numpy()
    return hashlib.sha256(np.packbits(bits, axis=None).tobytes()).hexdigest()[:16]


def generation_rate(
    device: Any = "cpu",
    output_dim: int = 8192,
    blocks: int = 8,
    rows_per_block: int | None = None,
    dtype: Any = None,
) -> float:
    """Entries of P generated per second on ``device``: ``blocks`` distinct calls of
    :meth:`RademacherProjector.block` after one warm-up call (a GPU is synchronised before
    each clock reading)."""
    import torch

    device = torch.device(device)
    rows = rows_per_block or default_rows_per_block(device, output_dim)
    projector = RademacherProjector(
        rows * (blocks + 1), output_dim, 0, device, dtype=dtype, rows_per_block=rows
    )

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    projector.block(blocks)
    sync()
    started = time.perf_counter()
    for b in range(blocks):
        projector.block(b)
    sync()
    return rows * output_dim * blocks / (time.perf_counter() - started)
