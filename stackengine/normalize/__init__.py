"""Per-frame normalization: pass 1 measurements (:mod:`.measure`) and their use."""

from __future__ import annotations

from .measure import clear_cache, measure_frames, sampled_strips

__all__ = ["measure_frames", "sampled_strips", "clear_cache"]
