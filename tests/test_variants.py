"""Kernels compiled per choice (stackengine.kernels.variants): only the chosen branch
is compiled, each choice is cached under a name of its own, and a new process loads
it from the cache instead of compiling it again."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from stackengine.kernels import resample as rs
from stackengine.kernels.variants import per_choice, variant

BILINEAR_RUN = """
import numpy as np
from numba.core import event
from stackengine.kernels import resample as rs
src = np.arange(64, dtype=np.float32).reshape(8, 8)
out = np.empty((6, 6), dtype=np.float32)
with event.install_recorder("numba:compile") as rec:
    rs.resample(src, 0, 0, [[1, 0, 0.5], [0, 1, 0.25], [0, 0, 1]], out, 0, 0, "bilinear")
print(repr(float(out[2, 3])))
for _, ev in rec.buffer:
    if ev.is_start:
        print(ev.data["dispatcher"].py_func.__qualname__)
"""


def test_a_resampling_variant_compiles_only_its_method(tmp_path):
    # a new process and an empty cache folder: what it needs compiles, and nothing else
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    r = subprocess.run(
        [sys.executable, "-c", BILINEAR_RUN], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    value, *names = r.stdout.split()
    # the bilinear value at (x + 0.5, y + 0.25) of the ramp 8 y + x, worked by hand
    assert float(value) == 8 * 2.25 + 3.5
    assert any(n.startswith("_resample_kernel_method_1") for n in names), names
    # one row function (the old kernel compiled all four)
    assert [n for n in names if "row" in n] == ["_row_bilinear"], names
    assert len(names) < 12, names  # the kernel, one row and a few of numba's helpers


def test_variants_are_one_object_per_choice_with_names_of_their_own():
    a = rs.resample_kernel(rs.BILINEAR)
    assert rs.resample_kernel(rs.BILINEAR) is a
    b = rs.resample_kernel(rs.LANCZOS3)
    assert b is not a
    assert a.py_func.__qualname__ != b.py_func.__qualname__  # cache files of their own
    with pytest.raises(TypeError, match="per_choice"):
        variant(np.sum, METHOD=1)
    with pytest.raises(TypeError, match="bool, an int or a flat tuple"):
        variant(per_choice()(lambda: 0), METHOD=1.5)
    with pytest.raises(NameError, match="METOHD"):  # a typo: not the default's code
        variant(rs._resample_kernel, METOHD=rs.BILINEAR)


MODULE = """
from stackengine.kernels.variants import per_choice

SIDE = 0

@per_choice(nogil=True)
def pick(x):
    if SIDE == 0:
        return x - 1.0
    return x + 1.0
"""

RUN = """
import sys
from numba.core import event
sys.path.insert(0, {folder!r})
import mod_choice
from stackengine.kernels.variants import variant
with event.install_recorder("numba:compile") as rec:
    print(variant(mod_choice.pick, SIDE=0)(10.0), variant(mod_choice.pick, SIDE=1)(10.0))
print(sum(1 for _, ev in rec.buffer if ev.is_start))
"""


def test_a_new_process_loads_the_variants_from_the_cache(tmp_path):
    (tmp_path / "mod_choice.py").write_text(textwrap.dedent(MODULE))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    code = RUN.format(folder=str(tmp_path))
    runs = [
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        for _ in range(2)
    ]
    for r in runs:
        assert r.returncode == 0, r.stderr
    first, second = (r.stdout.split() for r in runs)
    assert first[:2] == second[:2] == ["9.0", "11.0"]
    assert int(first[2]) >= 2  # both choices compiled in the first process
    assert int(second[2]) == 0  # and both loaded from the cache in the second


METHODS_RUN = """
import sys
import numpy as np
from stackengine.kernels import resample as rs
frame = np.random.default_rng(0).normal(100, 2, (64, 64)).astype(np.float32)
m = [[1.0027, 0.0155, 2.2], [-0.0155, 1.0027, 1.8], [0, 0, 1]]
for method in sys.argv[1:]:
    out = np.empty((48, 48), dtype=np.float32)
    rs.resample(frame, 0, 0, m, out, 4, 4, method, True, True)
    print(method, np.nansum(out.astype(np.float64)).hex())
"""


def test_kernels_cached_by_different_processes_run_their_own_code(tmp_path):
    """Two processes each compile (and cache) one interpolation; a third loads both
    from the cache: each must run its own row function. (numba names a compiled
    function after its qualified name and a per-process counter: rows made by one
    factory under one name, compiled in two processes, got the same symbol, and the
    third process ran the first loaded row for both.)"""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))

    def run(*methods):
        cmd = [sys.executable, "-c", METHODS_RUN, *methods]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return dict(line.split() for line in r.stdout.splitlines())

    alone = run("bilinear") | run("lanczos3")
    assert alone["bilinear"] != alone["lanczos3"]
    assert run("lanczos3", "bilinear") == alone  # both loaded from the cache
