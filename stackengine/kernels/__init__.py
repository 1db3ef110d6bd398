"""Numba kernels: per-pixel rejection and combination. No dask, no files."""

from __future__ import annotations

from .engine import N_OUT, reduce_block

__all__ = ["N_OUT", "reduce_block"]
