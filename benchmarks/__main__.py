"""``python -m benchmarks``: run the benchmark (see :mod:`benchmarks.bench_sigma`)."""

from __future__ import annotations

from .bench_sigma import main

if __name__ == "__main__":
    raise SystemExit(main())
