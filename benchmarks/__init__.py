"""Benchmark harness for stackengine: workloads, methods, result reports.

Run ``python -m benchmarks --help``. The sigma-clipping benchmark
(:mod:`benchmarks.bench_sigma`) stacks a synthetic FITS frame set with
stackengine and with its peers (ccdproc, astropy), and with each of
stackengine's rejection algorithms (``--algorithms``), each in a fresh
process, and prints wall time, CPU time, peak RSS, throughput, speed-ups and
accuracy (against the peers and against the workload's noiseless truth).
``--normalize`` times each normalization's measure pass next to its stack pass
and checks the scales it finds against the workload's known ones.

Modules: :mod:`~benchmarks.workload` (the :class:`Workload` spec, seeded
frames written one at a time, the truth image and cosmic-ray mask), :mod:`~benchmarks.methods`
(what a child runs), :mod:`~benchmarks.normalization` (the measure pass
against the stack pass), :mod:`~benchmarks.runner` (children and the report
dict), :mod:`~benchmarks.accuracy`, :mod:`~benchmarks.report` (printing, kept
apart from measuring) and :mod:`~benchmarks.bench_sigma` (the command line).
Nothing heavy is imported at module level: every benchmark child imports this
package first, and the child's own imports are part of its measured time.
"""

from __future__ import annotations

from .accuracy import compare_images, truth_accuracy
from .report import format_report
from .workload import (
    GENERATOR_VERSION,
    Workload,
    cosmic_ray_mask,
    frame_scales,
    prepare_workload,
    truth_image,
)

__all__ = [
    "GENERATOR_VERSION",
    "Workload",
    "compare_images",
    "cosmic_ray_mask",
    "format_report",
    "frame_scales",
    "prepare_workload",
    "truth_accuracy",
    "truth_image",
]
