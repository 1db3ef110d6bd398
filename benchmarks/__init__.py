"""Benchmark harness for stackengine: workloads, methods, result reports.

Run ``python -m benchmarks --help`` (or ``stackengine bench --help``). The
standard mode stacks a synthetic frame set (presets ``quick``, ``standard``,
``large``; float32 or uint16, FITS or TIFF) with stackengine and with its
peers (ccdproc default and tuned, astropy, bottleneck, numpy and bottleneck
medians), each in a fresh process on the same files, ``--repeat`` times
alternating, and reports medians of wall time, CPU time, peak RSS and
throughput, the accuracy of every image (against astropy and against the
workload's noiseless truth) and the acceptance targets. ``--scaling`` times
each method against the number of frames, ``--compare-formats`` the same
workload stored as float32 FITS and uint16 TIFF; ``--algorithms`` and
``--normalize`` time stackengine's rejection algorithms and normalizations.
Output: text tables, ``--json``, ``--markdown`` and ``--plots`` (PNG).

Modules: :mod:`~benchmarks.workload` (the :class:`Workload` spec, presets,
seeded frames written one at a time, the truth image and cosmic-ray mask),
:mod:`~benchmarks.methods` (what a child runs; the registry) and
:mod:`~benchmarks.peers` (the peer methods), :mod:`~benchmarks.frameio`
(how the peers read frames), :mod:`~benchmarks.normalization` (the measure
pass against the stack pass), :mod:`~benchmarks.runner` (children, alternating
repeats, the standard report dict), :mod:`~benchmarks.stats` (medians over
repeats), :mod:`~benchmarks.system` (free memory, busy CPUs, page cache),
:mod:`~benchmarks.accuracy` and :mod:`~benchmarks.evaluate` (image accuracy),
:mod:`~benchmarks.checks` (the targets), :mod:`~benchmarks.scaling` and
:mod:`~benchmarks.formats` (the other modes), :mod:`~benchmarks.report`,
:mod:`~benchmarks.markdown` and :mod:`~benchmarks.plots` (output, kept apart
from measuring) and :mod:`~benchmarks.bench_sigma` (the command line).
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
