"""numba's cached kernels are dropped when any kernel source changes (_numba_cache).

numba reuses a cached function while its own file is unchanged, even when a
helper it inlined (from another module) changed; stackengine stamps its cache
folders with a hash of all kernel sources and empties them when that changes.
"""

from __future__ import annotations

import re
from pathlib import Path

import stackengine
from stackengine import _numba_cache as nc
from stackengine.kernels import select, window

PACKAGE = Path(stackengine.__file__).resolve().parent


def test_purge_stale_keeps_a_matching_folder_and_empties_another(tmp_path):
    for name in ("window.reduce-1.py311.nbi", "window.reduce-1.py311.1.nbc", "select.py311.pyc"):
        (tmp_path / name).write_bytes(b"x")
    assert nc.purge_stale(tmp_path, "new")  # no stamp yet: compiled from unknown sources
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([nc.STAMP, "select.py311.pyc"])
    assert (tmp_path / nc.STAMP).read_text() == "new"
    (tmp_path / "window.reduce-1.py311.nbi").write_bytes(b"x")  # compiled since
    assert not nc.purge_stale(tmp_path, "new")
    assert (tmp_path / "window.reduce-1.py311.nbi").exists()
    assert nc.purge_stale(tmp_path, "changed")  # a source changed: recompile everything
    assert not (tmp_path / "window.reduce-1.py311.nbi").exists()
    assert not nc.purge_stale(tmp_path / "new" / "cache", "x")  # made, stamped: nothing stale
    assert (tmp_path / "new" / "cache" / nc.STAMP).read_text() == "x"
    (tmp_path / "file").write_text("")
    assert not nc.purge_stale(tmp_path / "file" / "cache", "x")  # cannot be made: left alone


def test_hash_covers_every_source_and_numba(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("x = 1\n")
    b.write_text("y = 2\n")
    before = nc.source_hash([a, b])
    assert nc.source_hash([b, a]) == before  # order does not matter
    b.write_text("y = 3\n")  # a helper's file alone
    assert nc.source_hash([a, b]) != before


def test_every_module_with_cached_kernels_checks_its_folder():
    cached = [
        p
        for pkg in nc.PACKAGES
        for p in (PACKAGE / pkg).glob("*.py")
        if re.search(r"cache\s*=\s*True", p.read_text())
    ]
    assert len(cached) >= 15
    for path in cached:
        assert "check_caches(__name__)" in path.read_text(), path.name


def test_the_kernels_folder_is_stamped_with_the_current_sources():
    folder = nc._cache_dir(window)
    assert folder is not None and folder == nc._cache_dir(select)
    digest = nc.source_hash(p for pkg in nc.PACKAGES for p in (PACKAGE / pkg).glob("*.py"))
    assert (folder / nc.STAMP).read_text() == digest
