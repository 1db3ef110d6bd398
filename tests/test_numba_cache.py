"""numba's cached kernels: where they live, and dropped when any kernel source changes.

numba would cache the kernels inside the package (site-packages); stackengine
points it at a per-user folder instead, or at NUMBA_CACHE_DIR if set, and never
lets a kernel cache inside the package (read-only installs work, and pip leaves
no cache files behind). numba reuses a cached function while its own file is
unchanged, even when a helper it inlined (from another module) changed;
stackengine stamps its cache folders with a hash of all kernel sources and
empties them when that changes.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import stackengine
from stackengine import _numba_cache as nc
from stackengine.kernels import select, window

PACKAGE = Path(stackengine.__file__).resolve().parent
VERSION = stackengine.__version__


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
        # kernels compiled per choice at run time are checked one by one as they are made
        check = "check_kernel(" if path.name == "variants.py" else "check_caches(__name__)"
        assert check in path.read_text(), path.name


def test_the_kernels_folder_is_stamped_with_the_current_sources():
    folder = nc._cache_dir(window)
    assert folder is not None and folder == nc._cache_dir(select)
    digest = nc.source_hash(p for pkg in nc.PACKAGES for p in (PACKAGE / pkg).glob("*.py"))
    assert (folder / nc.STAMP).read_text() == digest


# -- where the caches live -------------------------------------------------------------

#: compiles one kernel in a fresh process; numba is imported first, as a program may do
_COMPILE = """
import numba
import numpy as np
from stackengine.kernels import byteorder
src = np.arange(7, dtype="f4")
dst = np.empty(7, ">f4")
assert byteorder.store_big_endian(src, dst) and (dst == src).all()
print(byteorder.__file__)
print(numba.config.CACHE_DIR)
"""


def _copy_package(root: Path) -> Path:
    """A copy of the package under ``root`` (no caches), as an install would have it."""
    shutil.copytree(PACKAGE, root / "stackengine", ignore=shutil.ignore_patterns("__pycache__"))
    return root / "stackengine"


def _compile(copy: Path, home: Path, *, env=None, prefix=()) -> list[str]:
    """Run :data:`_COMPILE` on the package ``copy`` with ``home`` as HOME (the command after
    ``prefix``); its output lines."""
    full = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    full.update(
        PYTHONPATH=str(copy.parent),
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        **(env or {}),
    )
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", _COMPILE],
        cwd=copy.parent,
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert Path(lines[0]).resolve().is_relative_to(copy.resolve())  # the copy ran, not /work
    return lines


def _cache_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.suffix in (".nbi", ".nbc")]


def _assert_kernels_cached_in(folder: Path, copy: Path) -> None:
    """The kernel's cache files are in ``folder``, stamped; none is inside ``copy``."""
    assert not _cache_files(copy)
    index = [p for p in _cache_files(folder) if p.suffix == ".nbi"]
    assert [p.name.split("-")[0] for p in index] == ["byteorder._f4_be"]
    digest = nc.source_hash(p for pkg in nc.PACKAGES for p in (copy / pkg).glob("*.py"))
    assert (index[0].parent / nc.STAMP).read_text() == digest


def test_this_process_caches_the_kernels_outside_the_package():
    folder = nc._cache_dir(window)
    assert folder is not None and not folder.resolve().is_relative_to(PACKAGE)
    if "NUMBA_CACHE_DIR" not in os.environ:
        assert nc.FOLDER is not None and folder.is_relative_to(nc.FOLDER)
        assert nc.FOLDER.parts[-2:] == (VERSION, "numba")


def test_kernels_cache_in_the_per_user_folder_and_never_in_the_package(tmp_path):
    copy = _copy_package(tmp_path / "site-packages")
    home = tmp_path / "home"
    folder = home / ".cache" / "stackengine" / VERSION / "numba"
    assert _compile(copy, home)[1] == str(folder)
    _assert_kernels_cached_in(folder, copy)
    before = {p: p.stat().st_mtime_ns for p in _cache_files(folder)}
    _compile(copy, home)  # a second process loads them: nothing rewritten or added
    assert {p: p.stat().st_mtime_ns for p in _cache_files(folder)} == before


def test_numba_cache_dir_overrides_the_per_user_folder(tmp_path):
    copy = _copy_package(tmp_path / "site-packages")
    home, mine = tmp_path / "home", tmp_path / "mine"
    assert _compile(copy, home, env={"NUMBA_CACHE_DIR": str(mine)})[1] == str(mine)
    _assert_kernels_cached_in(mine, copy)
    assert not (home / ".cache" / "stackengine").exists()


@pytest.mark.parametrize("home_writable", [True, False])
def test_read_only_install(tmp_path, home_writable):
    """The package copy (and, in one case, the home folder) cannot be written to.

    As root, the compiling process runs as ``nobody`` through ``setpriv --reuid
    --regid --clear-groups``, and the root-owned copy is read-only to it; as any
    other user, the folders are made read-only with chmod.
    """
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    prefix: list[str] = []
    uid = os.getuid()
    base = tmp_path
    if os.geteuid() == 0:
        import pwd

        nobody = pwd.getpwnam("nobody")
        uid = nobody.pw_uid
        prefix = ["setpriv", f"--reuid={uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
        try:
            ok = subprocess.run([*prefix, sys.executable, "-c", "pass"]).returncode == 0
        except OSError:  # no setpriv
            ok = False
        if not ok:
            pytest.skip("cannot run this Python as nobody")
        base = Path(tempfile.mkdtemp())  # pytest's tmp_path is closed to other users
        base.chmod(0o755)
    try:
        copy = _copy_package(base / "site-packages")
        home, tmp = base / "home", base / "tmp"
        home.mkdir()
        tmp.mkdir()
        tmp.chmod(0o1777)
        home.chmod(0o777 if home_writable else 0o555)
        for folder in [copy, *(p for p in copy.rglob("*") if p.is_dir())]:
            folder.chmod(0o555)
        probe = [*prefix, sys.executable, "-c", f"open({str(copy / 'kernels' / 'x')!r}, 'w')"]
        assert subprocess.run(probe, capture_output=True).returncode != 0  # read-only indeed
        if home_writable:
            folder = home / ".cache" / "stackengine" / VERSION / "numba"
        else:
            folder = tmp / f"stackengine-{uid}" / VERSION / "numba"
        lines = _compile(copy, home, env={"TMPDIR": str(tmp)}, prefix=prefix)
        assert lines[1] == str(folder)
        _assert_kernels_cached_in(folder, copy)
    finally:
        for folder in [p for p in base.rglob("*") if p.is_dir() and not p.is_symlink()]:
            folder.chmod(0o755)
        if prefix:
            shutil.rmtree(base)


def test_choose_folder_falls_back_to_a_private_temp_folder(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))  # no folder can be made there
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    top = tmp_path / "tmp" / f"stackengine-{os.getuid()}"
    assert nc.choose_folder("9.9") == top / "9.9" / "numba"
    assert (top / "9.9" / "numba").is_dir() and top.stat().st_mode & 0o077 == 0
    top.chmod(0o777)  # others could plant cache files (loaded as code): not used
    assert nc.choose_folder("9.9") is None
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert nc.choose_folder("9.9") == tmp_path / "cache" / "stackengine" / "9.9" / "numba"


@pytest.mark.parametrize("folder", ["cache", None])
def test_kernels_defined_while_numba_forgot_the_folder_leave_the_package(
    tmp_path, monkeypatch, folder
):
    """numba re-reads its environment when a NUMBA_ variable changed, dropping the
    folder stackengine gave it; a module defined then caches next to itself until
    check_caches moves its kernels (or, with no folder to move them to, drops their cache)."""
    from numba.core import config

    package = tmp_path / "package"
    package.mkdir()
    source = package / "probe.py"
    source.write_text(
        "from numba import njit\n\n\n@njit(cache=True)\ndef f(x):\n    return x + 1\n"
    )
    name = f"stackengine_probe_{folder}"
    mine = tmp_path / "cache" if folder else None
    monkeypatch.setattr(nc, "_ROOT", package.resolve())
    monkeypatch.setattr(nc, "FOLDER", mine)
    monkeypatch.setattr(nc, "_DIGEST", [])
    monkeypatch.setattr(nc, "_CHECKED", set())
    monkeypatch.setattr(config, "CACHE_DIR", "")  # forgotten
    spec = importlib.util.spec_from_file_location(name, source)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    assert nc._cache_dir(module) == package / "__pycache__"  # numba's own choice
    nc.check_caches(name)
    if mine is None:
        assert nc._cache_dir(module) is None and config.CACHE_DIR == ""
    else:
        assert config.CACHE_DIR == str(mine)  # restored for the modules that follow
        assert nc._cache_dir(module).is_relative_to(mine)
    assert module.f(1) == 2
    assert not _cache_files(package)
    assert len(_cache_files(tmp_path / "cache")) == (2 if mine else 0)


def test_first_run_compilation_is_announced_once(tmp_path, monkeypatch):
    """Said once per process, and only for a kernel neither compiled here nor cached."""
    import io
    from types import SimpleNamespace

    from stackengine import _numba_cache

    monkeypatch.setattr(_numba_cache, "_ANNOUNCED", [])

    def kernel(index, signatures=()):
        cache_file = SimpleNamespace(_index_path=str(index))
        return SimpleNamespace(signatures=list(signatures),
                               _cache=SimpleNamespace(_cache_file=cache_file))  # fmt: skip

    out = io.StringIO()
    cached = tmp_path / "k.nbi"
    cached.write_bytes(b"")
    assert not _numba_cache.announce_compiling(kernel(cached), out)  # in the cache
    assert not _numba_cache.announce_compiling(kernel(tmp_path / "x.nbi", ["sig"]), out)
    assert _numba_cache.announce_compiling(kernel(tmp_path / "x.nbi"), out)
    assert not _numba_cache.announce_compiling(kernel(tmp_path / "y.nbi"), out)  # once
    assert out.getvalue() == _numba_cache.COMPILING + "\n"
    assert "first run only" in out.getvalue()
