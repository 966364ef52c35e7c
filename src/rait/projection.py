"""A seeded dense Rademacher random projection that gives the same numbers on every device
(LESS, Xia et al. 2024; Johnson–Lindenstrauss).

A gradient ``g ∈ R^D`` becomes the feature ``f = Pᵀ g / √k ∈ R^k`` with ``P ∈ {−1, +1}^{D×k}``
dense, entries independent and equally likely, so that ``E⟨f(x), f(y)⟩ = ⟨g(x), g(y)⟩``.

``P`` is never held whole (D × k is 160 billion entries for a rank-64 LoRA of a 135M model):
it is generated in blocks of :data:`ROWS_PER_BLOCK` rows, each from its own stream,
``PCG64(SeedSequence([seed, block]))``, whose raw 64-bit output NumPy keeps stable across
versions and platforms (NEP 19). The bits are read least-significant first (bit ``j`` of the
block's bit string is row ``j // k``, column ``j % k``; 1 → +1, 0 → −1) and unpacked on the
target device with integer operations only, so a CPU and a GPU run project with the same
matrix, and any row range gives the same rows whatever the block it is asked in.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

ROWS_PER_BLOCK = 512


class RademacherProjector:
    """``f = Pᵀ g / √k`` for a D-dimensional ``g`` (see the module docstring).

    ``project(G, row_offset)`` projects the rows ``[row_offset, row_offset + G.shape[1])`` of a
    larger gradient (a parameter's slice), so per-parameter contributions can be summed.
    """

    def __init__(self, input_dim: int, output_dim: int = 8192, seed: int = 0, device: Any = "cpu"):
        import torch

        if input_dim <= 0 or output_dim <= 0:
            raise ValueError(f"projection sizes must be positive, got {input_dim} → {output_dim}")
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.scale = 1.0 / math.sqrt(self.output_dim)
        byte = torch.arange(256, dtype=torch.int64)
        # row v: the 8 signs of the byte v, least significant bit first (an L1-sized table)
        self._table = (((byte[:, None] >> torch.arange(8)) & 1) * 2 - 1).to(
            device=self.device, dtype=torch.float32
        )
        self._buffer: Any = None  # one block's worth of floats, reused by every block
        self._cached: tuple[int, Any] | None = None

    @property
    def n_blocks(self) -> int:
        return -(-self.input_dim // ROWS_PER_BLOCK)

    def _block_bits(self, block: int) -> np.ndarray:
        rows = min(ROWS_PER_BLOCK, self.input_dim - block * ROWS_PER_BLOCK)
        n_bits = rows * self.output_dim
        stream = np.random.PCG64(np.random.SeedSequence([self.seed, block]))
        raw = stream.random_raw(-(-n_bits // 64)).astype("<u8", copy=False)
        return raw.view(np.uint8)

    def block(self, block: int) -> Any:
        """Rows ``[block · R, (block + 1) · R)`` of P as a float32 (rows × k) ±1 tensor.

        The tensor lives in a buffer that the next call for another block overwrites (one
        allocation for the whole projection, and it stays warm in memory): clone it to keep it.
        """
        import torch

        if self._cached is not None and self._cached[0] == block:
            return self._cached[1]
        if not 0 <= block < self.n_blocks:
            raise IndexError(f"block {block} outside 0..{self.n_blocks - 1}")
        rows = min(ROWS_PER_BLOCK, self.input_dim - block * ROWS_PER_BLOCK)
        if self._buffer is None:
            size = min(ROWS_PER_BLOCK, self.input_dim) * self.output_dim
            self._buffer = torch.empty(-(-size // 64) * 64, device=self.device)
        data = torch.from_numpy(self._block_bits(block)).to(self.device, torch.int64)
        signs = self._buffer[: data.numel() * 8]
        torch.index_select(self._table, 0, data, out=signs.view(-1, 8))
        matrix = signs[: rows * self.output_dim].view(rows, self.output_dim)
        self._cached = (block, matrix)
        return matrix

    def _segments(self, start: int, stop: int):
        """(block, first row in block, last row in block, offset into the slice) covering
        the rows [start, stop)."""
        row = start
        while row < stop:
            block = row // ROWS_PER_BLOCK
            lo = row - block * ROWS_PER_BLOCK
            hi = min(ROWS_PER_BLOCK, stop - block * ROWS_PER_BLOCK)
            yield block, lo, hi, row - start
            row = block * ROWS_PER_BLOCK + hi

    def _check_range(self, start: int, width: int) -> None:
        if start < 0 or width < 0 or start + width > self.input_dim:
            raise ValueError(
                f"rows {start}..{start + width} outside the projector's {self.input_dim} rows"
            )

    def project(self, grads: Any, row_offset: int = 0, out: Any = None) -> Any:
        """``grads[:, j]`` is gradient row ``row_offset + j``; returns (n × k) ``grads Pᵀ/√k``
        for those rows, added into ``out`` when given."""
        import torch

        grads = grads.to(device=self.device, dtype=torch.float32)
        self._check_range(row_offset, grads.shape[1])
        if out is None:
            out = torch.zeros(grads.shape[0], self.output_dim, device=self.device)
        for block, lo, hi, at in self._segments(row_offset, row_offset + grads.shape[1]):
            out.addmm_(grads[:, at : at + hi - lo], self.block(block)[lo:hi], alpha=self.scale)
        return out

    def back_project(self, features: Any, row_offset: int = 0, width: int | None = None) -> Any:
        """``features P_rowsᵀ / √k`` (n × width): maps k-dimensional features back to gradient
        space, so that ``⟨g, back_project(f)⟩ = ⟨project(g), f⟩``."""
        import torch

        features = features.to(device=self.device, dtype=torch.float32)
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
