"""Calibration: knowing the frames, master bias/dark/flat, overscan and trim, bad pixels,
and the per-frame calibration the tile tasks apply (issue 15)."""
