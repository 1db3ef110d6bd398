"""The fault campaign as tests (issue 14, item 5).

* ``test_case``: the table of ``fault_cases.py`` (bad inputs, bad parameters,
  output conflicts, disk full), each one real ``python -m stackengine`` run in
  its own working folder. The runs are started together, two at a time, when
  the first case is reached; each test then checks its own: the exit code, the
  one error line and what it names, no traceback, the output folder's listing
  afterwards (minus the inputs), inputs and an older output untouched, and the
  result against a plain-numpy reference where the run succeeds.
* ``test_kill9`` / ``test_sigint`` / ``test_two_writers``: per output format,
  a run over larger frames is caught mid-write (polling every 5 ms for its
  temporary, partial store or lock; then SIGSTOP, so nothing races) and
  killed, interrupted or raced by a second run.
* ``test_fuzz_*``: hypothesis mutates valid FITS and TIFF bytes (truncation,
  header cards, TIFF header and IFD); stackengine must raise a
  ``StackEngineError`` naming the file or read exactly what astropy/tifffile
  read.

Disk full is a small tmpfs mounted at the output folder when this process may
mount one (root), else ``RLIMIT_FSIZE`` on the run; the test ids say which
(``disk-full-fits-tmpfs`` / ``...-rlimit``). The read-only folder case runs
without the capabilities that let root ignore permissions (``setpriv``), as
an unprivileged user cannot run an interpreter that lives under /root.

Speed: the table's runs are forked from a warm interpreter that has imported
the libraries once (``fault_cases.use_fork_server``, runpy of
``stackengine.__main__`` in a process of its own) instead of paying ~1.3 s of
imports each; ``STACKENGINE_FAULTS_FRESH=1`` runs every case in a fresh
``python -m stackengine`` instead. The kill/SIGINT/race runs, the disk-full
fallback and the read-only case always use fresh interpreters.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

try:
    from . import fault_cases as fc
except ImportError:  # tests/ is not a package: pytest puts it on sys.path
    import fault_cases as fc

WORKERS = 2


# ----------------------------------------------------------------------------- disk full


def _can_mount_tmpfs() -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = tempfile.mkdtemp(prefix="stackengine-tmpfs-probe-")
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe], capture_output=True
        )
        if done.returncode != 0:
            return False
        subprocess.run(["umount", probe], capture_output=True)
        return True
    finally:
        shutil.rmtree(probe, ignore_errors=True)


DISK_FULL = "tmpfs" if _can_mount_tmpfs() else "rlimit"
RLIMIT_BYTES = 128 * 1024
#: runs the command line with a file-size limit (SIGXFSZ ignored: writes fail with EFBIG)
_RLIMIT_LAUNCHER = (
    "import os, resource, signal, sys; "
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    f"resource.setrlimit(resource.RLIMIT_FSIZE, ({RLIMIT_BYTES}, {RLIMIT_BYTES})); "
    "os.execv(sys.executable, [sys.executable, '-m', 'stackengine', *sys.argv[1:]])"
)


def _case_id(case: fc.Case) -> str:
    return f"{case.id}-{DISK_FULL}" if case.tmpfs else case.id


# ----------------------------------------------------------------------------- state of folders


def signature(path: Path) -> Any:
    """What a path holds (kind and content, recursively, links not followed), or None."""
    try:
        st_ = os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    if os.path.islink(path):
        return ("link", os.readlink(path))
    if path.is_dir():
        return ("dir", tuple((p.name, signature(p)) for p in sorted(path.iterdir())))
    with open(path, "rb") as f:
        return ("file", st_.st_size, hashlib.sha1(f.read()).hexdigest())


def inputs_state(folder: Path, output: Path) -> dict[str, Any]:
    """Every entry of the working folder (recursively) except the output."""
    state = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            if p == output or output in p.parents:
                continue
            if name in dirs and not os.path.islink(p):
                continue  # folders are described by their entries
            state[str(p.relative_to(folder))] = signature(p)
    return state


def listing(folder: Path) -> list[str] | None:
    return sorted(os.listdir(folder)) if folder.is_dir() else None


def leftovers(folder: Path, before: list[str] | None, output: str) -> list[str] | None:
    """The output folder's listing minus the inputs (what was there before, but the output)."""
    now = listing(folder)
    if now is None:
        return None
    inputs = set(before or ()) - {output}
    return sorted(set(now) - inputs)


# ----------------------------------------------------------------------------- the table runner


@dataclass
class Outcome:
    case: fc.Case
    run: fc.Run
    wd: Path
    output: Path
    inputs_before: dict[str, Any]
    inputs_after: dict[str, Any]
    output_before: Any
    output_after: Any
    left: list[str] | None
    how: str


class Table:
    """Runs the selected cases, WORKERS at a time, in the background."""

    def __init__(self, base: Path, cases: list[fc.Case]) -> None:
        self.base = base
        self.mounts: list[Path] = []
        self.tempdirs: list[Path] = []
        self.pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="fault-case")
        self.futures: dict[str, Future] = {c.id: self.pool.submit(self._run, c) for c in cases}

    def outcome(self, case: fc.Case) -> Outcome:
        return self.futures[case.id].result()

    def close(self) -> None:
        for future in self.futures.values():
            future.cancel()
        self.pool.shutdown(wait=True)
        for mount in self.mounts:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        for path in self.tempdirs:
            shutil.rmtree(path, ignore_errors=True)

    def _root(self, case: fc.Case) -> Path:
        if not case.unprivileged:
            root = self.base / case.id
            root.mkdir()
            return root
        root = Path(tempfile.mkdtemp(prefix=f"stackengine-{case.id}-"))
        root.chmod(0o755)
        self.tempdirs.append(root)
        return root

    def _run(self, case: fc.Case) -> Outcome:
        root = self._root(case)
        wd = root / "w"
        wd.mkdir()
        output = wd / case.out
        prefix: tuple[str, ...] = ()
        how = "plain"
        if case.tmpfs:
            output.parent.mkdir()
            if DISK_FULL == "tmpfs":
                done = subprocess.run(
                    [
                        "mount",
                        "-t",
                        "tmpfs",
                        "-o",
                        f"size={case.tmpfs}",
                        "tmpfs",
                        str(output.parent),
                    ],
                    capture_output=True,
                    text=True,
                )
                assert done.returncode == 0, done.stderr
                self.mounts.append(output.parent)
                how = f"tmpfs size={case.tmpfs}"
            else:
                prefix = (sys.executable, "-c", _RLIMIT_LAUNCHER)
                how = f"RLIMIT_FSIZE={RLIMIT_BYTES}"
        if case.unprivileged:
            prefix = fc.UNPRIVILEGED
            how = "without CAP_DAC_OVERRIDE" if prefix else "unprivileged user"
        args = case.make(wd)
        inputs_before = inputs_state(wd, output)
        before = listing(output.parent)
        output_before = signature(output)
        if prefix and prefix[0] == sys.executable:  # the rlimit launcher takes the arguments
            proc = subprocess.run(
                [*prefix, *map(str, args)],
                cwd=wd,
                capture_output=True,
                text=True,
                timeout=300,
                env=fc.cli_env(),
            )
            run = fc.Run([str(a) for a in args], proc.returncode, proc.stdout, proc.stderr)
        else:
            run = fc.cli(args, wd, prefix=prefix)
        return Outcome(
            case,
            run,
            wd,
            output,
            inputs_before,
            inputs_state(wd, output),
            output_before,
            signature(output),
            leftovers(output.parent, before, output.name),
            how,
        )


@pytest.fixture(scope="session")
def warm(tmp_path_factory):
    """The fork server (unless STACKENGINE_FAULTS_FRESH=1), then one small run in a fresh
    interpreter, so numba's cached kernels are checked (or compiled) once, not by every run."""
    folder = tmp_path_factory.mktemp("fault_warmup")
    names = fc.fits_set(folder, 3)
    run = fc.cli(["stack", *names, "-o", "warm.fits", "--quiet"], folder, fresh=True)
    assert run.code == 0, run
    fc.use_fork_server(not os.environ.get("STACKENGINE_FAULTS_FRESH"))
    yield
    fc.use_fork_server(False)


@pytest.fixture(scope="session")
def table(request, tmp_path_factory, warm):
    selected = []
    for item in request.session.items:
        spec = getattr(item, "callspec", None)
        if spec is not None and isinstance(spec.params.get("case"), fc.Case):
            selected.append(spec.params["case"])
    runner = Table(tmp_path_factory.mktemp("faults"), selected)
    yield runner
    runner.close()


def _says(line: str, says: tuple[Any, ...]) -> list[str]:
    """The expected substrings missing from ``line`` (a tuple: any one of them)."""
    missing = []
    for want in says:
        choices = want if isinstance(want, tuple) else (want,)
        if not any(c in line for c in choices):
            missing.append(" or ".join(repr(c) for c in choices))
    return missing


@pytest.mark.parametrize("case", fc.CASES, ids=_case_id)
def test_case(case: fc.Case, table: Table) -> None:
    o = table.outcome(case)
    run = o.run
    context = f"[{o.how}]\n{run}"
    assert run.code in case.codes, context
    assert "Traceback" not in run.err and "Traceback" not in run.out, context
    if run.code == 0:
        assert not run.error_lines, context
        if case.warns:
            assert any(not _says(ln, case.warns) for ln in run.lines), (case.warns, context)
    elif run.code == 2:  # argparse: usage, then one line naming the option
        assert run.lines and not _says(run.lines[-1], case.says), (case.says, context)
    else:
        assert len(run.lines) == 1 and run.lines[0].startswith(fc.ERROR), context
        missing = _says(run.lines[0], case.says)
        assert not missing, f"missing {missing} in: {run.lines[0]}\n{context}"
    # what the output folder holds afterwards (minus the inputs)
    if case.left == "auto":
        exists = run.code == 0 or o.output_before is not None
        expected = [o.output.name] if exists else []
    else:
        expected = None if case.left is None else sorted(case.left)
    assert o.left == expected, f"output folder afterwards: {o.left}, expected {expected}\n{context}"
    changed = {k for k, v in o.inputs_before.items() if o.inputs_after.get(k) != v}
    assert not changed, f"inputs changed: {sorted(changed)}\n{context}"
    if run.code != 0:
        assert o.output_after == o.output_before, f"a failed run changed {o.output}\n{context}"
    elif case.check is not None:
        case.check(o.wd, run)


def test_table_has_enough_cases() -> None:
    assert len(fc.CASES) >= 60


# ----------------------------------------------------------------------------- kill, SIGINT, races

FORMATS = ("fits", "tif", "zarr")
BIG = dict(n=16, shape=(1024, 1024))
BIG_OPTIONS = ("--memory-limit", "32MiB", "--quiet")


@pytest.fixture(scope="session")
def frames(tmp_path_factory, warm) -> dict[str, list[str]]:
    """16 float32 frames of 1024x1024 (64 MiB: a write of ~1 s) and 3 small ones."""
    folder = tmp_path_factory.mktemp("fault_frames")
    big = fc.fits_set(folder, BIG["n"], BIG["shape"], prefix="big", seed=11)
    small = fc.fits_set(folder, 3, prefix="small", seed=12)
    return {
        "big": [str(folder / n) for n in big],
        "small": [str(folder / n) for n in small],
    }


class Problems:
    """Soft assertions: every step of a scenario is checked and all failures reported."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.log: list[str] = []

    def step(self, name: str, run: fc.Run | None = None) -> None:
        self.log.append(f"--- {name}" + (f"\n{run}" if run is not None else ""))

    def expect(self, ok: Any, what: str) -> bool:
        if not ok:
            self.items.append(what)
        return bool(ok)

    def one_line(self, run: fc.Run, *says: Any) -> None:
        self.expect("Traceback" not in run.err, f"traceback: {run.err[-300:]}")
        if self.expect(run.code == 1, f"exit {run.code}, expected 1: {run.err.strip()[-300:]}"):
            lines = run.lines
            if self.expect(
                len(lines) == 1 and lines[0].startswith(fc.ERROR), f"not one error line: {lines}"
            ):
                missing = _says(lines[0], says)
                self.expect(not missing, f"missing {missing} in: {lines[0]}")

    def done(self) -> None:
        assert not self.items, "\n".join(["", *self.items, "", *self.log])


def start(args: list[Any], cwd: Path) -> subprocess.Popen:
    """A fresh ``python -m stackengine`` (with faulthandler: SIGABRT dumps its threads)."""
    return subprocess.Popen(
        [sys.executable, "-X", "faulthandler", *fc.CLI[1:], *map(str, args)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=fc.cli_env(),
    )


def finish(proc: subprocess.Popen, args: list[Any], timeout: float = 120) -> fc.Run:
    """Wait for ``proc``; if it hangs, SIGABRT it and fail with its threads' stacks."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGCONT)
        os.kill(proc.pid, signal.SIGABRT)
        out, err = proc.communicate()
        pytest.fail(
            f"stackengine {args[0]} hangs (no exit within {timeout} s); its stacks:\n{err[-6000:]}"
        )
    return fc.Run([str(a) for a in args], proc.returncode, out, err)


def wait_until(proc: subprocess.Popen, cond, timeout: float = 120.0) -> bool:
    """Poll ``cond`` every 5 ms while ``proc`` runs; SIGSTOP it as soon as it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if cond():
            os.kill(proc.pid, signal.SIGSTOP)
            if cond():
                return True
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.005)
    return False


def temporaries(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.tmp-*"))


def partial_of(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial")


def lock_of(out: Path) -> Path:
    return out.with_name(f".{out.name}.lock")


def tiles_written(partial: Path) -> int:
    image = partial / "image"
    if not image.is_dir():
        return 0
    return sum(
        1
        for p in image.rglob("*")
        if p.is_file() and p.name not in ("zarr.json", ".zarray", ".zattrs")
    )


def writing(out: Path, fmt: str, tiles: int = 3):
    """True while a run is mid-write: some tiles in the partial store, or the temporary."""
    if fmt == "zarr":
        return lambda: tiles_written(partial_of(out)) >= tiles
    return lambda: bool(temporaries(out.parent, out.name))


def big_args(frames: dict[str, list[str]], out: Path, *extra: Any) -> list[Any]:
    return ["stack", *frames["big"], "-o", out, *BIG_OPTIONS, *extra]


def valid_output(p: Problems, out: Path, n: int) -> None:
    try:
        got = fc.read_result(out)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        p.expect(False, f"{out.name} cannot be read back: {exc!r}")
        return
    image = np.asarray(got["image"])
    p.expect(image.shape == BIG["shape"] if n == BIG["n"] else True, f"image shape {image.shape}")
    p.expect(np.isfinite(image).any(), "image has no finite value")
    if got.get("ncombine") is not None:
        p.expect(int(got["ncombine"]) == n, f"NCOMBINE {got['ncombine']}, expected {n}")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_kill9(fmt: str, frames, tmp_path) -> None:
    """kill -9 mid-write: the old output is intact; the next run cleans up (or resumes)."""
    p = Problems()
    out = tmp_path / f"out.{fmt}"
    old = fc.cli(["stack", *frames["small"], "-o", out, "--quiet"], tmp_path)
    assert old.code == 0, old
    old_sig = signature(out)
    args = big_args(frames, out, "--overwrite")
    proc = start(args, tmp_path)
    try:
        caught = wait_until(proc, writing(out, fmt))
    finally:
        proc.kill()
        proc.communicate()
    assert caught, f"the run ended before it could be killed mid-write (exit {proc.returncode})"
    p.step("killed with SIGKILL mid-write")
    p.expect(signature(out) == old_sig, "the old output changed after kill -9")
    left = set(listing(tmp_path)) - {out.name}
    allowed = {lock_of(out).name}
    allowed |= (
        {partial_of(out).name}
        if fmt == "zarr"
        else {t.name for t in temporaries(tmp_path, out.name)}
    )
    p.expect(left <= allowed, f"after kill -9: unexpected entries {sorted(left - allowed)}")
    if fmt != "zarr":
        for t in temporaries(tmp_path, out.name):
            p.expect(
                t.name.startswith(f".{out.name}.tmp-{proc.pid}-"),
                f"temporary {t.name} does not carry the pid {proc.pid} and host",
            )
        again = fc.cli(["stack", *frames["small"], "-o", out, "--overwrite", "--quiet"], tmp_path)
        p.step("rerun with --overwrite", again)
        p.expect(again.code == 0, f"rerun exit {again.code}: {again.err.strip()[-300:]}")
        p.expect("Traceback" not in again.err, "traceback in rerun")
        p.expect(
            "removed stale temporary" in again.err, "rerun does not say 'removed stale temporary'"
        )
        p.expect(listing(tmp_path) == [out.name], f"after the rerun: {listing(tmp_path)}")
        valid_output(p, out, 3)
        p.done()
        return
    partial = partial_of(out)
    p.expect(partial.is_dir(), "the partial store is gone after kill -9")
    before = signature(partial)
    other = fc.cli(
        big_args(frames, out, "--overwrite", "--resume", "--sigma-lower", "0.5"), tmp_path
    )
    p.step("--resume with --sigma-lower 0.5", other)
    p.one_line(other, partial.name, "different job", "sigma_lower")
    p.expect(
        signature(partial) == before, "the refused --resume changed or removed the partial store"
    )
    p.expect(signature(out) == old_sig, "the refused --resume changed the old output")
    resumed = fc.cli(big_args(frames, out, "--overwrite", "--resume"), tmp_path)
    p.step("--resume", resumed)
    p.expect(resumed.code == 0, f"--resume exit {resumed.code}: {resumed.err.strip()[-300:]}")
    p.expect("resuming" in resumed.err, "--resume does not say what it resumes")
    p.expect(listing(tmp_path) == [out.name], f"after --resume: {listing(tmp_path)}")
    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    fresh = fc.cli(big_args(frames, fresh_dir / out.name), fresh_dir)
    assert fresh.code == 0, fresh
    if resumed.code == 0:
        a, b = fc.read_result(out), fc.read_result(fresh_dir / out.name)
        for name in ("image", "count", "rejected_low", "rejected_high", "noise"):
            p.expect(
                name in a and np.array_equal(a[name], b[name], equal_nan=True),
                f"resumed {name} differs from a fresh run's",
            )
    p.done()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_sigint(fmt: str, frames, tmp_path) -> None:
    """Ctrl-C mid-write: exit 130, one line; FITS/TIFF leave nothing, zarr its partial store."""
    p = Problems()
    out = tmp_path / f"out.{fmt}"
    args = big_args(frames, out)
    proc = start(args, tmp_path)
    try:
        caught = wait_until(proc, writing(out, fmt, tiles=2))
        if caught:
            os.kill(proc.pid, signal.SIGINT)
            os.kill(proc.pid, signal.SIGCONT)
        run = finish(proc, args, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert caught, f"the run ended before it could be interrupted mid-write\n{run}"
    p.step("SIGINT mid-write", run)
    p.expect(run.code == 130, f"exit {run.code}, expected 130")
    p.expect("Traceback" not in run.err, "traceback")
    p.expect(run.lines[-1:] == ["stackengine: interrupted"], f"last line: {run.lines[-1:]}")
    expected = [partial_of(out).name] if fmt == "zarr" else []
    p.expect(
        listing(tmp_path) == expected, f"left behind: {listing(tmp_path)}, expected {expected}"
    )
    p.done()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_two_writers(fmt: str, frames, tmp_path) -> None:
    """A second run on an OUT being written fails at once; the first one completes."""
    p = Problems()
    out = tmp_path / f"out.{fmt}"
    args = big_args(frames, out)
    first = start(args, tmp_path)
    second = None
    try:
        busy = writing(out, fmt, tiles=1)
        caught = wait_until(first, lambda: lock_of(out).exists() or busy())
        if caught:
            try:
                second = fc.cli(args, tmp_path, timeout=60)
            except subprocess.TimeoutExpired:
                p.expect(False, "the second run waits for the first instead of failing at once")
            os.kill(first.pid, signal.SIGCONT)
        run = finish(first, args)
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGCONT)
            first.kill()
            first.communicate()
    assert caught, f"the first run ended before the second could start\n{run}"
    if second is not None:
        p.step("second run while the first is writing", second)
        p.one_line(second, out.name, "is being written by another run (pid ", " on ")
        if second.lines:
            p.expect(f"pid {first.pid}" in second.lines[0], f"does not name pid {first.pid}")
    p.step("first run", run)
    p.expect(run.code == 0, f"first run exit {run.code}: {run.err.strip()[-300:]}")
    p.expect(listing(tmp_path) == [out.name], f"afterwards: {listing(tmp_path)}")
    valid_output(p, out, BIG["n"])
    p.done()


# ----------------------------------------------------------------------------- hypothesis fuzz


def _fits_header_cards(raw: bytes) -> int:
    """Number of header cards up to and including END."""
    for i in range(0, len(raw), 80):
        if raw[i : i + 8] == b"END     ":
            return i // 80 + 1
    return len(raw) // 80


def _ifd_span(raw: bytes) -> tuple[int, int]:
    """Byte range of the classic TIFF header and its first IFD."""
    order = "<" if raw[:2] == b"II" else ">"
    offset = int(np.frombuffer(raw[4:8], f"{order}u4")[0])
    count = int(np.frombuffer(raw[offset : offset + 2], f"{order}u2")[0])
    return offset, offset + 2 + 12 * count + 4


class Bases(dict):
    """Valid frame files by name (a short repr: hypothesis prints the test's arguments)."""

    def __repr__(self) -> str:
        return f"Bases({sorted(self)})"


@pytest.fixture(scope="session")
def fuzz_base() -> Bases:
    return Bases(
        {
            "fits-int16-bzero": [
                fc.fits_bytes(a) for a in fc.noise(3, fc.SMALL, np.uint16, seed=21)
            ],
            "fits-float32": [fc.fits_bytes(a) for a in fc.noise(3, fc.SMALL, np.float32, seed=22)],
            "tiff-uint16": [fc.tiff_bytes(np.uint16, fc.SMALL, seed=23 + i) for i in range(3)],
        }
    )


TOKENS = [
    b"'",
    b"abc",
    b"-",
    b"0",
    b"1",
    b"9",
    b"99999999",
    b".",
    b"E",
    b" ",
    b"=",
    b"\x00",
    b"/",
    b"T",
    b"F",
    b"-32",
    b"64",
]
#: value columns of a card worth hitting more often: keyword, "= ", value start and end
COLUMNS = [0, 1, 5, 7, 8, 9, 10, 20, 25, 29, 30, 31, 40]
which_frame = st.integers(0, 2)
cut_at = st.integers(0, 6000)
patch = st.one_of(st.sampled_from(TOKENS), st.binary(min_size=1, max_size=6))


def card_mutation(raw: bytes, card: int, column: int, data: bytes) -> tuple[int, bytes]:
    """Overwrite ``data`` at ``column`` of header card ``card`` (modulo the cards up to END)."""
    return (card % _fits_header_cards(raw)) * 80 + column, data


def ifd_mutation(raw: bytes, where: int, data: bytes) -> tuple[int, bytes]:
    """Overwrite ``data`` in the 8-byte TIFF header (where < 8) or in its first IFD."""
    if where < 8:
        return where, data
    start, stop = _ifd_span(raw)
    return start + (where - 8) % (stop - start), data


def cut_mutation(raw: bytes, cut: int) -> tuple[str, int]:
    return ("cut", min(cut, len(raw) - 1))


def _apply(raw: bytes, mutation) -> bytes:
    """The bytes cut at ("cut", n), or with ``data`` written over them at ``pos``."""
    if mutation[0] == "cut":
        return raw[: mutation[1]]
    pos, data = mutation
    return (raw[:pos] + data + raw[pos + len(data) :])[: len(raw)]


def _reference_read(paths: list[Path]) -> np.ndarray:
    import tifffile
    from astropy.io import fits

    arrays = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in paths:
            if path.suffix == ".tif":
                arrays.append(np.asarray(tifffile.imread(path)))
            else:
                arrays.append(np.asarray(fits.getdata(path)))
    shapes = {(a.shape, a.dtype.str) for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"frames disagree: {shapes}")
    return np.stack(arrays)


def _fuzz_one(base: list[bytes], which: int, mutation, suffix: str, folder: Path) -> None:
    import stackengine as se

    case = Path(tempfile.mkdtemp(dir=folder))
    paths = []
    for i, raw in enumerate(base):
        path = case / f"frame{i}{suffix}"
        path.write_bytes(_apply(raw, mutation) if i == which else raw)
        paths.append(path)
    bad = paths[which].name
    try:
        # a warning (astropy's VerifyWarning on a broken card) is not judged here
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frames = se.open_frames([str(p) for p in paths])
            read = np.asarray(frames.values)
            result = se.stack(frames).compute()
    except se.StackEngineError as exc:
        message = str(exc)
        assert bad in message, f"{type(exc).__name__} does not name {bad}: {message}"
        assert "\n" not in message.strip(), f"message is not one line: {message!r}"
        return
    except Exception as exc:  # not a StackEngineError: a traceback on the command line
        raise AssertionError(f"{bad} mutated {mutation!r}: {type(exc).__name__}: {exc}") from exc
    try:
        want = _reference_read(paths)
    except Exception:  # noqa: BLE001
        # astropy/tifffile refuse the damaged bytes (e.g. a stray byte in EXTEND) where
        # stackengine's reader of the few cards it needs read them: then it must have read
        # exactly the undamaged frames
        pristine = case / "pristine"
        pristine.mkdir()
        originals = []
        for i, raw in enumerate(base):
            originals.append(pristine / f"frame{i}{suffix}")
            originals[-1].write_bytes(raw)
        want = _reference_read(originals)
    assert read.shape == want.shape and read.dtype == want.dtype, (
        f"{bad} mutated {mutation!r}: stackengine reads {read.shape} {read.dtype}, "
        f"the reference {want.shape} {want.dtype}"
    )
    assert np.array_equal(read, want, equal_nan=True), f"{bad} mutated {mutation!r}: values differ"
    expected = se.stack(want).compute()
    for name in ("image", "count", "rejected_low", "rejected_high", "noise"):
        assert np.array_equal(result[name].values, expected[name].values, equal_nan=True), name


FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("base_name", ["fits-int16-bzero", "fits-float32"])
@FUZZ
@given(which=which_frame, cut=cut_at)
def test_fuzz_fits_truncated(base_name, which, cut, fuzz_base, fuzz_dir) -> None:
    base = fuzz_base[base_name]
    _fuzz_one(base, which, cut_mutation(base[which], cut), ".fits", fuzz_dir)


@pytest.mark.parametrize("base_name", ["fits-int16-bzero", "fits-float32"])
@FUZZ
@given(
    which=which_frame,
    card=st.integers(0, 40),
    column=st.one_of(st.sampled_from(COLUMNS), st.integers(0, 79)),
    data=patch,
)
def test_fuzz_fits_card(base_name, which, card, column, data, fuzz_base, fuzz_dir) -> None:
    base = fuzz_base[base_name]
    _fuzz_one(base, which, card_mutation(base[which], card, column, data), ".fits", fuzz_dir)


@FUZZ
@given(which=which_frame, cut=cut_at)
def test_fuzz_tiff_truncated(which, cut, fuzz_base, fuzz_dir) -> None:
    base = fuzz_base["tiff-uint16"]
    _fuzz_one(base, which, cut_mutation(base[which], cut), ".tif", fuzz_dir)


@FUZZ
@given(which=which_frame, where=st.integers(0, 300), data=patch)
def test_fuzz_tiff_ifd(which, where, data, fuzz_base, fuzz_dir) -> None:
    base = fuzz_base["tiff-uint16"]
    _fuzz_one(base, which, ifd_mutation(base[which], where, data), ".tif", fuzz_dir)
