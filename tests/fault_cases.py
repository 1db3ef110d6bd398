"""The fault campaign's table (issue 14, item 5): inputs, builders and expected outcomes.

Imported by ``test_faults.py`` (pytest collects only ``test_*.py``). Every case
builds its inputs in a fresh working folder, runs the real command line once
(``python -m stackengine ...``) with that folder as the working directory and
states what must come out: the exit code, the substrings of the one error line
(the file or parameter it names), the listing of the output folder afterwards
(minus the inputs) and, for runs that succeed, a check of the result against a
plain-numpy reference.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: the command line of this checkout (not whatever is installed)
CLI = (sys.executable, "-m", "stackengine")
#: root without the capabilities that override file permissions (root ignores a
#: read-only folder; nobody cannot run this interpreter, which lives under /root)
UNPRIVILEGED = (
    ("setpriv", "--bounding-set=-dac_override,-fowner", "--inh-caps=-dac_override,-fowner")
    if os.geteuid() == 0
    else ()
)
ERROR = "stackengine: error: "
SMALL = (16, 16)


def cli_env(home: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    for name in ("STACKENGINE_DEBUG", "DASK_SCHEDULER_ADDRESS", "PYTEST_CURRENT_TEST"):
        env.pop(name, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if home is not None:
        env["HOME"] = str(home)
    return env


@dataclass
class Run:
    """One finished command: its arguments, exit code and output."""

    args: list[str]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"$ stackengine {' '.join(self.args)}\n-> {self.code}\n{self.out}{self.err}"

    @property
    def lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip()]

    @property
    def error_lines(self) -> list[str]:
        return [ln for ln in self.lines if ln.startswith(ERROR)]


def cli(
    args: list[Any],
    cwd: Path,
    *,
    prefix: tuple[str, ...] = (),
    env=None,
    timeout: float = 300,
    fresh: bool = False,
) -> Run:
    """Run ``stackengine ARGS`` in ``cwd`` as a separate process.

    With the fork server on (:func:`use_fork_server`) and no ``prefix``/``env``
    /``fresh``, the process is forked from an interpreter that has imported
    the libraries already and runs ``python -m stackengine`` there (runpy):
    the same code path from ``__main__``, its own process, exit code and
    stdout/stderr, in a tenth of the time. Otherwise a fresh interpreter.
    """
    args = [str(a) for a in args]
    if _SERVER is not None and not prefix and env is None and not fresh:
        return _cli_forked(args, cwd, timeout)
    proc = subprocess.run(
        [*prefix, *CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or cli_env(),
    )
    return Run(args, proc.returncode, proc.stdout, proc.stderr)


_SERVER: Any = None
#: what the fork server imports once (what ``python -m stackengine stack`` imports anyway)
PRELOAD = [
    "numpy",
    "dask.array",
    "xarray",
    "zarr",
    "tifffile",
    "astropy.io.fits",
    "stackengine",
    "stackengine.cli",
]


def use_fork_server(enabled: bool) -> None:
    """Run :func:`cli` commands in processes forked from a warm interpreter (or not)."""
    global _SERVER
    if not enabled:
        _SERVER = None
        return
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([*PRELOAD, __name__])
    _SERVER = ctx


def _forked_main(args: list[str], cwd: str, out: str, err: str) -> None:
    """The body of a forked ``python -m stackengine ARGS`` (runs in the child)."""
    import runpy

    os.chdir(cwd)
    for fd, path in ((1, out), (2, err)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    for name in ("STACKENGINE_DEBUG", "DASK_SCHEDULER_ADDRESS", "PYTEST_CURRENT_TEST"):
        os.environ.pop(name, None)
    sys.argv = [str(REPO / "stackengine" / "__main__.py"), *args]
    code: Any = 0
    try:
        runpy.run_module("stackengine", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
        raise
    finally:  # the child's own record of its exit code: under load the fork server's
        # report of it can be lost (multiprocessing then says 255)
        Path(out).with_name("code").write_text(str(code if isinstance(code, int) else 1))


def _cli_forked(args: list[str], cwd: Path, timeout: float) -> Run:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="stackengine-cli-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        proc = _SERVER.Process(target=_forked_main, args=(args, str(cwd), str(out), str(err)))
        proc.start()
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join()
            raise subprocess.TimeoutExpired(["stackengine", *args], timeout)
        read = lambda p: p.read_text(errors="replace") if p.exists() else ""  # noqa: E731
        recorded = Path(tmp) / "code"
        code = int(recorded.read_text()) if recorded.exists() else proc.exitcode
        return Run(args, code, read(out), read(err))


# ----------------------------------------------------------------------------- builders


def noise(n=3, shape=SMALL, dtype=np.float32, seed=0, loc=100.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(loc, 5.0, (n, *shape))
    if np.dtype(dtype).kind in "ui":
        x = np.clip(np.rint(x * 10), 0, np.iinfo(dtype).max)
    return x.astype(dtype)


def fits_bytes(data: np.ndarray, **header: Any) -> bytes:
    from astropy.io import fits

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits.PrimaryHDU(data, header=fits.Header(header) if header else None).writeto(buf)
    return buf.getvalue()


def put_fits(folder: Path, name: str, data: np.ndarray, **header: Any) -> str:
    (folder / name).write_bytes(fits_bytes(data, **header))
    return name


def fits_set(folder: Path, n=3, shape=SMALL, dtype=np.float32, prefix="f", seed=0) -> list[str]:
    return [
        put_fits(folder, f"{prefix}{i}.fits", a) for i, a in enumerate(noise(n, shape, dtype, seed))
    ]


def put_tiff(folder: Path, name: str, data: np.ndarray, **kw: Any) -> str:
    import tifffile

    tifffile.imwrite(folder / name, data, **kw)
    return name


def tiff_set(
    folder: Path, n=3, shape=SMALL, dtype=np.uint16, prefix="t", seed=0, **kw
) -> list[str]:
    return [
        put_tiff(folder, f"{prefix}{i}.tif", a, **kw)
        for i, a in enumerate(noise(n, shape, dtype, seed))
    ]


def card(text: str) -> bytes:
    assert len(text) <= 80, text
    return text.ljust(80).encode("latin-1")


def patch_card(raw: bytes, keyword: str, new: bytes | None) -> bytes:
    """Replace (or blank, with ``new=None``) the header card of ``keyword`` in FITS bytes."""
    key = keyword.ljust(8).encode("ascii")
    for pos in range(0, 2880 * 4, 80):
        if raw[pos : pos + 8] == key:
            return raw[:pos] + (new if new is not None else b" " * 80) + raw[pos + 80 :]
    raise AssertionError(f"no {keyword} card")


def png_bytes(width=16, height=16) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + bytes(range(width)) for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# ----------------------------------------------------------------------------- references


def read_frames(folder: Path, names: list[str]) -> np.ndarray:
    """The frames as astropy / tifffile read them (cubes give several), stacked."""
    import tifffile
    from astropy.io import fits

    planes = []
    for name in names:
        path = folder / name
        if name.lower().endswith((".tif", ".tiff")):
            data = tifffile.imread(path)
        else:
            data = fits.getdata(path)
        data = np.asarray(data)
        if data.ndim == 1:
            data = data[None, :]
        planes.extend(data if data.ndim == 3 else [data])
    return np.stack(planes)


def read_result(path: Path) -> dict[str, np.ndarray]:
    """The written result's image (and maps where the format has them)."""
    suffix = path.suffix.lower()
    if suffix in (".fits", ".fit", ".fts"):
        from astropy.io import fits

        with fits.open(path) as hdul:
            out = {"image": np.array(hdul[0].data), "ncombine": hdul[0].header.get("NCOMBINE")}
            names = [h.name for h in hdul]
            for name in ("COUNT", "REJECTED_LOW", "REJECTED_HIGH"):
                if name in names:
                    out[name.lower()] = np.array(hdul[name].data)
        return out
    if suffix in (".tif", ".tiff"):
        import tifffile

        return {"image": tifffile.imread(path)}
    import xarray as xr

    with xr.open_zarr(path) as ds:
        out = {name: ds[name].values for name in ds.data_vars if "frame" not in ds[name].dims}
        out["ncombine"] = ds.attrs.get("n_frames")
        return out


def reference(frames: np.ndarray, **params: Any) -> dict[str, np.ndarray]:
    try:
        from .reference import reference_stack
    except ImportError:  # tests/ is not a package: pytest puts it on sys.path
        from reference import reference_stack
    params.setdefault("reject", "sigma")
    return reference_stack(frames, **params)


def matches(names: list[str], out: str = "out.fits", n: int | None = None, **params: Any):
    """A check: the output equals the reference stack of the inputs ``names``."""

    def check(folder: Path, run: Run) -> None:
        frames = read_frames(folder, names)
        want = reference(frames, **params)
        got = read_result(folder / out)
        assert_result(got, want, frames.shape[0] if n is None else n)

    return check


def assert_result(got: dict[str, Any], want: dict[str, np.ndarray], n: int | None) -> None:
    image = np.asarray(got["image"], dtype=np.float64)
    assert image.shape == want["image"].shape, (image.shape, want["image"].shape)
    np.testing.assert_array_equal(np.isnan(image), np.isnan(want["image"]), "NaN positions")
    np.testing.assert_allclose(image, want["image"], rtol=1e-5, atol=1e-6, equal_nan=True)
    if "count" in got:
        np.testing.assert_array_equal(got["count"], want["count"], "count")
        assert not np.any(np.isfinite(image[np.asarray(got["count"]) == 0])), "image where count 0"
    if n is not None and got.get("ncombine") is not None:
        assert int(got["ncombine"]) == n, (got["ncombine"], n)


# ----------------------------------------------------------------------------- the table


@dataclass
class Case:
    """One row of the table.

    make(folder) builds the inputs in the working folder and returns the
    arguments after ``stackengine``. ``says``: substrings of the one error
    line (a tuple inside is a choice: any of them). ``left``: the output
    folder's listing afterwards, minus the inputs; "auto" is the output's name
    after a run that succeeded or when the output existed before, else
    nothing; None: the folder must not exist. ``check(folder, run)``: more
    checks for a run that succeeded.
    """

    id: str
    make: Callable[[Path], list[Any]]
    code: int | tuple[int, ...]
    says: tuple[Any, ...] = ()
    left: Any = "auto"
    out: str = "out.fits"
    check: Callable[[Path, Run], None] | None = None
    unprivileged: bool = False  # run without permission-overriding capabilities
    tmpfs: str | None = None  # size of a small tmpfs mounted at the output folder
    warns: tuple[str, ...] = ()  # substrings of a warning line on stderr (runs that succeed)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def codes(self) -> tuple[int, ...]:
        return self.code if isinstance(self.code, tuple) else (self.code,)


def stack3(*extra: Any, out: str = "out.fits", n=3, shape=SMALL, dtype=np.float32):
    """make(): three good FITS frames and ``stack f0 f1 f2 -o OUT EXTRA``."""

    def make(d: Path) -> list[Any]:
        names = fits_set(d, n, shape, dtype)
        return ["stack", *names, "-o", out, *extra]

    return make


def with_bad(bad: Callable[[Path], str], *, out="out.fits", good=2, tiff=False, extra=()):
    """make(): ``good`` good frames plus the one ``bad(d)`` builds (named in the error)."""

    def make(d: Path) -> list[Any]:
        names = tiff_set(d, good) if tiff else fits_set(d, good)
        return ["stack", *names, bad(d), "-o", out, *extra]

    return make


def raw_file(name: str, data: bytes | Callable[[], bytes]):
    def bad(d: Path) -> str:
        (d / name).write_bytes(data() if callable(data) else data)
        return name

    return bad


def good_fits_bytes(dtype=np.float32, shape=SMALL, seed=5) -> bytes:
    return fits_bytes(noise(1, shape, dtype, seed)[0])


def fits_with_card(keyword: str, text: str | None, dtype=np.float32):
    return lambda: patch_card(good_fits_bytes(dtype), keyword, None if text is None else card(text))


def fits_cut(keep: Callable[[int], int]):
    def data() -> bytes:
        raw = good_fits_bytes(shape=(32, 32))
        return raw[: keep(len(raw))]

    return data


def tiff_bytes(dtype=np.uint16, shape=SMALL, seed=5, **kw) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, noise(1, shape, dtype, seed)[0], **kw)
    return buf.getvalue()


def param(name: str) -> tuple[str, ...]:
    """A parameter named as the API does or as the command line does."""
    return (name, name.replace("_", "-"))


ANY_FRAME = ("f0.fits", "f1.fits", "f2.fits")


def mk_symlink_loop(d: Path) -> list[Any]:
    names = fits_set(d, 2)
    os.symlink("loop_b.fits", d / "loop_a.fits")
    os.symlink("loop_a.fits", d / "loop_b.fits")
    return ["stack", *names, "loop_a.fits", "-o", "out.fits"]


def mk_self_loop(d: Path) -> list[Any]:
    names = fits_set(d, 2)
    os.symlink("self.fits", d / "self.fits")
    return ["stack", *names, "self.fits", "-o", "out.fits"]


def mk_dangling(d: Path) -> list[Any]:
    names = fits_set(d, 2)
    os.symlink("nowhere.fits", d / "dangling.fits")
    return ["stack", *names, "dangling.fits", "-o", "out.fits"]


def mk_dir_as_input(d: Path) -> list[Any]:
    names = fits_set(d, 2)
    (d / "folder.fits").mkdir()
    (d / "folder.fits" / "x.txt").write_text("not a frame")
    return ["stack", *names, "folder.fits", "-o", "out.fits"]


def mk_cube_matching(d: Path) -> list[Any]:
    names = fits_set(d, 2)
    put_fits(d, "cube.fits", noise(3, SMALL, seed=9))
    return ["stack", *names, "cube.fits", "-o", "out.fits"]


def mk_cube_mismatch(d: Path) -> list[Any]:
    names = fits_set(d, 2)
    put_fits(d, "cube.fits", noise(3, (16, 17), seed=9))
    return ["stack", *names, "cube.fits", "-o", "out.fits"]


def mk_channel_mismatch(d: Path) -> list[Any]:
    names = tiff_set(d, 2)
    put_tiff(d, "rgb.tif", noise(1, (*SMALL, 3), np.uint16)[0], photometric="rgb")
    return ["stack", *names, "rgb.tif", "-o", "out.fits"]


def mk_fits_tiff_mismatch(d: Path) -> list[Any]:
    names = fits_set(d, 2)
    put_tiff(d, "t.tif", noise(1, SMALL, np.uint16)[0])
    return ["stack", *names, "t.tif", "-o", "out.fits"]


def mk_nan_only(value: float):
    def make(d: Path) -> list[Any]:
        names = [put_fits(d, f"f{i}.fits", np.full(SMALL, value, np.float32)) for i in range(3)]
        return ["stack", *names, "-o", "out.fits"]

    return make


def mk_mixed_inf(d: Path) -> list[Any]:
    values = (np.inf, -np.inf, np.nan)
    names = [put_fits(d, f"f{i}.fits", np.full(SMALL, v, np.float32)) for i, v in enumerate(values)]
    return ["stack", *names, "-o", "out.fits"]


def mk_one_nan_frame(d: Path) -> list[Any]:
    names = fits_set(d, 2)
    names.append(put_fits(d, "f2.fits", np.full(SMALL, np.nan, np.float32)))
    return ["stack", *names, "-o", "out.fits"]


def mk_shape(shape: tuple[int, ...], n=3, extra=()):
    def make(d: Path) -> list[Any]:
        names = [put_fits(d, f"f{i}.fits", a) for i, a in enumerate(noise(n, shape))]
        return ["stack", *names, "-o", "out.fits", *extra]

    return make


def mk_huge_header(all_frames: bool):
    def make(d: Path) -> list[Any]:
        names = fits_set(d, 3)
        for name in names if all_frames else names[1:2]:
            raw = (d / name).read_bytes()
            raw = patch_card(raw, "NAXIS1", card("NAXIS1  =               100000"))
            raw = patch_card(raw, "NAXIS2", card("NAXIS2  =               100000"))
            (d / name).write_bytes(raw)
        return ["stack", *names, "-o", "out.fits"]

    return make


def mk_glob_nothing(d: Path) -> list[Any]:
    fits_set(d, 3)
    return ["stack", "nothing*.fits", "-o", "out.fits"]


def mk_twice(*how: str, allow=False):
    def make(d: Path) -> list[Any]:
        fits_set(d, 3)
        return ["stack", *how, "-o", "out.fits", *(["--allow-duplicates"] if allow else [])]

    return make


def check_duplicates(folder: Path, run: Run) -> None:
    frames = read_frames(folder, ["f0.fits", "f1.fits", "f2.fits", "f0.fits"])
    assert_result(read_result(folder / "out.fits"), reference(frames), 4)


def mk_output_among_inputs(d: Path) -> list[Any]:
    fits_set(d, 3)
    first = cli(["stack", "*.fits", "-o", "master.fits", "--overwrite"], d)
    assert first.code == 0, first
    (d.parent / "first.fits").write_bytes((d / "master.fits").read_bytes())
    return ["stack", "*.fits", "-o", "master.fits", "--overwrite"]


def check_same_as_first(folder: Path, run: Run) -> None:
    first = read_result(folder.parent / "first.fits")
    again = read_result(folder / "master.fits")
    assert first["ncombine"] == 3 and again["ncombine"] == 3, (first["ncombine"], again["ncombine"])
    for name in ("image", "count"):
        np.testing.assert_array_equal(again[name], first[name], name)


def mk_existing(kind: str, out: str, *extra: Any, written=False):
    """Three frames and an existing OUT: a file, a user's folder, or a run's output."""

    def make(d: Path) -> list[Any]:
        names = fits_set(d, 3)
        target = d / out
        if written:
            first = cli(["stack", *names, "-o", out], d)
            assert first.code == 0, first
        elif kind == "file":
            target.write_bytes(b"precious user data\n")
        elif kind == "dir":
            target.mkdir()
            (target / "notes.txt").write_text("my own files\n")
            (target / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
        elif kind == "symlink":
            (d.parent / "elsewhere.txt").write_text("linked\n")
            os.symlink(d.parent / "elsewhere.txt", target)
        return ["stack", *names, "-o", out, *extra]

    return make


def mk_partial(junk: bool, *extra: Any):
    def make(d: Path) -> list[Any]:
        names = fits_set(d, 3)
        partial = d / ".out.zarr.partial"
        partial.mkdir()
        (partial / ("notes.txt" if junk else "zarr.json")).write_text("{}")
        return ["stack", *names, "-o", "out.zarr", *extra]

    return make


def mk_weights_exptime_missing(d: Path) -> list[Any]:
    names = fits_set(d, 3)
    return ["stack", *names, "-o", "out.fits", "--weights", "exptime"]


def mk_disk_full(out: str, old: bool):
    """Frames big enough for a 128 KiB tmpfs at ``full/`` (the output folder)."""

    def make(d: Path) -> list[Any]:
        small = fits_set(d, 3, prefix="s")
        big = fits_set(d, 3, (384, 384), prefix="b")
        if old:
            first = cli(["stack", *small, "-o", f"full/{out}"], d)
            assert first.code == 0, first
        extra = ["--compression", "none"] if out.endswith(".zarr") else []
        return ["stack", *big, "-o", f"full/{out}", "--overwrite", *extra]

    return make


def mk_link_twice(d: Path) -> list[Any]:
    names = fits_set(d, 3)
    os.symlink("f0.fits", d / "alias.fits")
    return ["stack", *names, "alias.fits", "-o", "out.fits"]


def mk_linked_folder(d: Path) -> list[Any]:
    names = fits_set(d, 3)
    (d.parent / "real_folder").mkdir()
    os.symlink(d.parent / "real_folder", d / "linked")
    return ["stack", *names, "-o", "linked/out.fits"]


def info_with(bad: Callable[[Path], str]):
    def make(d: Path) -> list[Any]:
        return ["info", *fits_set(d, 2), bad(d)]

    return make


def mk_info_loop(d: Path) -> list[Any]:
    return ["info", *mk_symlink_loop(d)[1:4]]


def mk_readonly(d: Path) -> list[Any]:
    names = fits_set(d, 3)
    (d / "ro").mkdir(mode=0o555)
    (d / "ro").chmod(0o555)
    return ["stack", *names, "-o", "ro/out.fits"]


def garbage_card_bytes() -> bytes:
    raw = fits_bytes(noise(1, SMALL, seed=5)[0], EXPTIME=10.0, OBJECT="M42", FILTER="R")
    raw = patch_card(raw, "EXPTIME", card("EXPTIME = 'abc"))  # unterminated string
    raw = patch_card(
        raw, "OBJECT", (b"OBJ\xffCT = \x00\x01\x02" + bytes(range(200, 250))).ljust(80)
    )
    return patch_card(raw, "FILTER", card("FILTER  = 1.2.3.4 / no such number"))


def header_without_end() -> bytes:
    return patch_card(good_fits_bytes(), "END", None)


def ok_fits(names: list[str], n: int | None = None, **params: Any):
    return matches(names, "out.fits", n, **params)


def either_error_or_nan(names: list[str], **params: Any):
    """A run that may refuse (one line) or succeed with NaN where nothing is kept."""
    return matches(names, "out.fits", None, **params)


def _cases() -> list[Case]:
    F3 = ["f0.fits", "f1.fits", "f2.fits"]
    cases = [
        # --- bad inputs ----------------------------------------------------------------
        Case("empty-fits", with_bad(raw_file("empty.fits", b"")), 1, ("empty.fits",)),
        Case("empty-tif", with_bad(raw_file("empty.tif", b""), tiff=True), 1, ("empty.tif",)),
        Case(
            "truncated-header",
            with_bad(raw_file("cut.fits", fits_cut(lambda n: 1000))),
            1,
            ("cut.fits",),
        ),
        Case(
            "header-block-only",
            with_bad(raw_file("cut.fits", fits_cut(lambda n: 2880))),
            1,
            ("cut.fits",),
        ),
        Case(
            "header-without-END",
            with_bad(raw_file("noend.fits", header_without_end)),
            1,
            ("noend.fits",),
        ),
        Case(
            "truncated-data",
            with_bad(raw_file("cut.fits", fits_cut(lambda n: n - 2000))),
            1,
            ("cut.fits",),
        ),
        Case(
            "truncated-data-1-byte",
            with_bad(raw_file("cut.fits", fits_cut(lambda n: 2880 * 2 + 1))),
            1,
            ("cut.fits",),
        ),
        Case(
            "text-named-fits",
            with_bad(raw_file("text.fits", b"this is not a FITS file\n" * 300)),
            1,
            ("text.fits",),
        ),
        Case(
            "random-bytes-named-fits",
            with_bad(raw_file("rnd.fits", np.random.default_rng(1).bytes(8000))),
            1,
            ("rnd.fits",),
        ),
        Case("png-named-tif", with_bad(raw_file("pic.tif", png_bytes), tiff=True), 1, ("pic.tif",)),
        Case("png-named-fits", with_bad(raw_file("pic.fits", png_bytes)), 1, ("pic.fits",)),
        Case("tiff-named-fits", with_bad(raw_file("t.fits", tiff_bytes)), 1, ("t.fits",)),
        Case(
            "fits-named-tif", with_bad(raw_file("f.tif", good_fits_bytes), tiff=True), 1, ("f.tif",)
        ),
        Case(
            "tiff-truncated-data",
            with_bad(raw_file("cut.tif", lambda: tiff_bytes(shape=(64, 64))[:3000]), tiff=True),
            1,
            ("cut.tif",),
        ),
        Case(
            "tiff-truncated-ifd",
            with_bad(raw_file("cut.tif", lambda: tiff_bytes()[:12]), tiff=True),
            1,
            ("cut.tif",),
        ),
        Case(
            "tiff-bad-magic",
            with_bad(raw_file("bad.tif", lambda: b"II\x2b\x01" + tiff_bytes()[4:]), tiff=True),
            1,
            ("bad.tif",),
        ),
        Case("cube-mismatched-among-frames", mk_cube_mismatch, 1, ("cube.fits", "mismatch")),
        Case(
            "cube-matching-among-frames",
            mk_cube_matching,
            0,
            check=ok_fits(["f0.fits", "f1.fits", "cube.fits"], 5),
        ),
        Case(
            "shape-mismatch",
            with_bad(lambda d: put_fits(d, "odd.fits", noise(1, (16, 17))[0])),
            1,
            ("odd.fits", "mismatch"),
        ),
        Case(
            "dtype-mismatch",
            with_bad(lambda d: put_fits(d, "f64.fits", noise(1, SMALL, np.float64)[0])),
            1,
            ("f64.fits", "mismatch"),
        ),
        Case("channel-mismatch", mk_channel_mismatch, 1, ("rgb.tif", "mismatch")),
        Case("fits-tiff-dtype-mismatch", mk_fits_tiff_mismatch, 1, ("t.tif", "mismatch")),
        Case(
            "NAXIS1-string",
            with_bad(raw_file("g.fits", fits_with_card("NAXIS1", "NAXIS1  = 'abc'"))),
            1,
            ("g.fits", "NAXIS1"),
        ),
        Case(
            "NAXIS1-float",
            with_bad(
                raw_file("g.fits", fits_with_card("NAXIS1", "NAXIS1  =                 16.0"))
            ),
            1,
            ("g.fits", "NAXIS1"),
        ),
        Case(
            "NAXIS1-negative",
            with_bad(
                raw_file("g.fits", fits_with_card("NAXIS1", "NAXIS1  =                  -16"))
            ),
            1,
            ("g.fits", "NAXIS1"),
        ),
        Case(
            "NAXIS1-zero",
            with_bad(
                raw_file("g.fits", fits_with_card("NAXIS1", "NAXIS1  =                    0"))
            ),
            1,
            ("g.fits",),
        ),
        Case(
            "BITPIX-12",
            with_bad(
                raw_file("g.fits", fits_with_card("BITPIX", "BITPIX  =                   12"))
            ),
            1,
            ("g.fits", "BITPIX"),
        ),
        Case(
            "BZERO-string",
            with_bad(
                raw_file("g.fits", fits_with_card("BZERO", "BZERO   = 'abc'", np.uint16)), extra=()
            ),
            1,
            ("g.fits",),
        ),
        Case(
            "garbage-other-cards",
            with_bad(raw_file("g.fits", garbage_card_bytes)),
            (0, 1),
            ("g.fits",),
            check=ok_fits(["f0.fits", "f1.fits", "g.fits"]),
        ),
        Case("symlink-loop", mk_symlink_loop, 1, ("loop_a.fits", "symbolic link loop")),
        Case("symlink-self-loop", mk_self_loop, 1, ("self.fits", "symbolic link loop")),
        Case("dangling-symlink", mk_dangling, 1, ("dangling.fits",)),
        Case("folder-named-fits", mk_dir_as_input, 1, ("folder.fits",)),
        Case("missing-file", with_bad(lambda d: "gone.fits"), 1, ("gone.fits",)),
        Case("glob-matches-nothing", mk_glob_nothing, 1, ("nothing*.fits", "no file matches")),
        Case(
            "same-file-twice",
            mk_twice("f0.fits", "f1.fits", "f2.fits", "f0.fits"),
            1,
            ("f0.fits", "given twice"),
        ),
        Case(
            "same-file-twice-spelled-differently",
            mk_twice("f0.fits", "f1.fits", "./f2.fits", "f2.fits"),
            1,
            ("f2.fits", "given twice"),
        ),
        Case(
            "same-file-by-glob-and-name",
            mk_twice("*.fits", "f1.fits"),
            1,
            ("f1.fits", "given twice"),
        ),
        Case(
            "same-file-twice-allowed",
            mk_twice("f0.fits", "f1.fits", "f2.fits", "f0.fits", allow=True),
            0,
            check=check_duplicates,
        ),
        Case(
            "output-among-inputs-second-run",
            mk_output_among_inputs,
            0,
            out="master.fits",
            warns=("master.fits", "is the output; not read as an input"),
            check=check_same_as_first,
        ),
        Case(
            "nan-only-frames",
            mk_nan_only(np.nan),
            (0, 1),
            (ANY_FRAME + ("out.fits",),),
            check=either_error_or_nan(F3),
        ),
        Case(
            "inf-only-frames",
            mk_nan_only(np.inf),
            (0, 1),
            (ANY_FRAME + ("out.fits",),),
            check=either_error_or_nan(F3),
        ),
        Case(
            "mixed-inf-nan-frames",
            mk_mixed_inf,
            (0, 1),
            (ANY_FRAME + ("out.fits",),),
            check=either_error_or_nan(F3),
        ),
        Case("one-nan-frame-among-good", mk_one_nan_frame, 0, check=ok_fits(F3, 3)),
        Case(
            "one-frame-with-rejection",
            mk_shape(SMALL, 1),
            (0, 1),
            (("f0.fits", "frame"),),
            check=either_error_or_nan(["f0.fits"]),
        ),
        Case(
            "one-frame-without-rejection",
            mk_shape(SMALL, 1, ("--reject", "none")),
            0,
            check=ok_fits(["f0.fits"], 1, reject=None),
        ),
        Case("huge-header-one-frame", mk_huge_header(False), 1, ("f1.fits",)),
        Case("huge-header-all-frames", mk_huge_header(True), 1, (ANY_FRAME,)),
        Case("shape-1x1", mk_shape((1, 1)), 0, check=ok_fits(F3, 3)),
        Case("shape-1x37", mk_shape((1, 37)), 0, check=ok_fits(F3, 3)),
        Case("shape-37x1", mk_shape((37, 1)), 0, check=ok_fits(F3, 3)),
        Case("shape-1d-row", mk_shape((37,)), 0, check=ok_fits(F3, 3)),
        Case("shape-odd-1031x7", mk_shape((1031, 7)), 0, check=ok_fits(F3, 3)),
        # --- bad parameters ------------------------------------------------------------
        Case("sigma-lower-negative", stack3("--sigma-lower", "-1"), 1, (param("sigma_lower"),)),
        Case("sigma-upper-nan", stack3("--sigma-upper", "nan"), 1, (param("sigma_upper"),)),
        Case("combine-unknown", stack3("--combine", "foo"), 2, ("--combine",)),
        Case("center-unknown", stack3("--center", "foo"), 2, ("--center",)),
        Case("maxiters-not-a-number", stack3("--maxiters", "x"), 2, ("--maxiters",)),
        Case("maxiters-negative", stack3("--maxiters", "-3"), 1, (param("maxiters"),)),
        Case("memory-limit-zero", stack3("--memory-limit", "0"), 1, (param("memory_limit"),)),
        Case("memory-limit-garbage", stack3("--memory-limit", "lots"), 1, (param("memory_limit"),)),
        Case("reject-unknown", stack3("--reject", "nosuch"), 1, ("nosuch",)),
        Case("reject-unknown-in-list", stack3("--reject", "sigma,nosuch"), 1, ("nosuch",)),
        Case("weights-wrong-count", stack3("--weights", "1,2"), 1, (param("weights"),)),
        Case("weights-garbage", stack3("--weights", "abc"), 2, ("--weights",)),
        Case(
            "weights-with-median",
            stack3("--weights", "1,1,1", "--combine", "median"),
            1,
            (param("weights"),),
        ),
        Case("weights-missing-keyword", stack3("--weights", "keyword:NOPE"), 1, ("NOPE",)),
        Case("weights-exptime-absent", mk_weights_exptime_missing, 1, (("EXPTIME", "exptime"),)),
        Case("dtype-complex64", stack3("--dtype", "complex64"), 1, ("complex64",)),
        Case("dtype-int64", stack3("--dtype", "int64"), 1, ("int64",)),
        Case("compression-lzw-for-fits", stack3("--compression", "lzw"), 1, ("lzw",)),
        Case(
            "compression-unknown-for-tif",
            stack3("--compression", "bogus", out="out.tif"),
            1,
            ("bogus",),
            out="out.tif",
        ),
        Case(
            "compression-lzw-for-zarr",
            stack3("--compression", "lzw", out="out.zarr"),
            1,
            ("lzw",),
            out="out.zarr",
        ),
        Case(
            "extrema-too-many",
            stack3("--reject", "extrema", "--n-low", "2", "--n-high", "1"),
            1,
            (param("n_low") + param("n_high"),),
        ),
        Case(
            "esd-alpha-above-1",
            stack3("--reject", "esd", "--esd-alpha", "1.5"),
            1,
            (param("esd_alpha"),),
        ),
        Case(
            "percentile-negative",
            stack3("--reject", "percentile", "--percentile-low", "-0.1"),
            1,
            (param("percentile_low"),),
        ),
        Case(
            "minmax-min-above-max",
            stack3("--reject", "minmax", "--min-value", "10", "--max-value", "5"),
            1,
            (param("min_value") + param("max_value"),),
        ),
        Case(
            "reference-out-of-range",
            stack3("--normalize", "additive", "--reference", "99"),
            1,
            ("reference",),
        ),
        Case("hdu-missing", stack3("--hdu", "5"), 1, (ANY_FRAME,)),
        Case("workers-zero", stack3("--workers", "0"), 1, ("workers",)),
        Case(
            "storage-option-without-value",
            stack3("--storage-option", "novalue"),
            1,
            ("--storage-option",),
        ),
        Case("resume-for-fits", stack3("--resume"), 1, ("out.fits", "resume")),
        # --- output conflicts ----------------------------------------------------------
        Case(
            "output-exists",
            mk_existing("file", "out.fits"),
            1,
            ("out.fits", "exists (pass overwrite=True / --overwrite)"),
        ),
        Case(
            "output-exists-zarr",
            mk_existing("file", "out.zarr", written=True),
            1,
            ("out.zarr", "exists (pass overwrite=True / --overwrite)"),
            out="out.zarr",
        ),
        Case(
            "output-exists-symlink",
            mk_existing("symlink", "out.fits"),
            1,
            ("out.fits", "exists (pass overwrite=True / --overwrite)"),
        ),
        Case(
            "output-is-an-input",
            stack3(out="f0.fits"),
            1,
            ("f0.fits", "exists (pass overwrite=True / --overwrite)"),
            out="f0.fits",
        ),
        Case(
            "overwrite-file",
            mk_existing("file", "out.fits", "--overwrite"),
            0,
            check=ok_fits(F3, 3),
        ),
        Case(
            "overwrite-file-with-zarr",
            mk_existing("file", "out.zarr", "--overwrite"),
            0,
            out="out.zarr",
            check=matches(F3, "out.zarr", 3),
        ),
        Case(
            "overwrite-written-zarr",
            mk_existing("file", "out.zarr", "--overwrite", "--combine", "median", written=True),
            0,
            out="out.zarr",
            check=matches(F3, "out.zarr", 3, combine="median"),
        ),
        Case(
            "overwrite-user-folder-fits",
            mk_existing("dir", "out.fits", "--overwrite"),
            1,
            ("out.fits", "not written by stackengine"),
        ),
        Case(
            "overwrite-user-folder-zarr",
            mk_existing("dir", "out.zarr", "--overwrite"),
            1,
            ("out.zarr", "not written by stackengine"),
            out="out.zarr",
        ),
        Case(
            "overwrite-user-folder-tif",
            mk_existing("dir", "out.tif", "--overwrite"),
            1,
            ("out.tif", "not written by stackengine"),
            out="out.tif",
        ),
        Case(
            "unknown-suffix",
            stack3(out="out.png"),
            1,
            ("out.png", "unknown output format"),
            out="out.png",
        ),
        Case("no-suffix", stack3(out="out"), 1, ("out", "unknown output format"), out="out"),
        Case(
            "compressed-suffix",
            stack3(out="out.fits.gz"),
            1,
            ("out.fits.gz", "unknown output format"),
            out="out.fits.gz",
        ),
        Case(
            "upper-case-suffix",
            stack3(out="out.FITS"),
            0,
            out="out.FITS",
            check=matches(F3, "out.FITS", 3),
        ),
        Case(
            "missing-output-folder",
            stack3(out="nosuch/out.fits"),
            1,
            ("nosuch", "output folder does not exist"),
            left=None,
            out="nosuch/out.fits",
        ),
        Case(
            "output-folder-is-a-file",
            stack3(out="f0.fits/out.fits"),
            1,
            ("f0.fits",),
            left=None,
            out="f0.fits/out.fits",
        ),
        Case(
            "read-only-folder",
            mk_readonly,
            1,
            ("ro", "not writable"),
            out="ro/out.fits",
            unprivileged=True,
        ),
        Case(
            "stale-partial-without-resume",
            mk_partial(False),
            1,
            (".out.zarr.partial", "--resume"),
            out="out.zarr",
        ),
        Case(
            "resume-user-folder-as-partial",
            mk_partial(True, "--resume"),
            1,
            (".out.zarr.partial",),
            out="out.zarr",
        ),
        Case("same-file-via-symlink", mk_link_twice, 1, (("f0.fits", "alias.fits"), "given twice")),
        Case(
            "output-folder-via-symlink",
            mk_linked_folder,
            0,
            out="linked/out.fits",
            check=matches(F3, "linked/out.fits", 3),
        ),
        # --- stackengine info: the same one line for bad inputs ---------------------------
        Case(
            "info-truncated",
            info_with(raw_file("cut.fits", fits_cut(lambda n: n - 2000))),
            1,
            ("cut.fits",),
        ),
        Case("info-png-named-tif", info_with(raw_file("pic.tif", png_bytes)), 1, ("pic.tif",)),
        Case(
            "info-NAXIS1-string",
            info_with(raw_file("g.fits", fits_with_card("NAXIS1", "NAXIS1  = 'abc'"))),
            1,
            ("g.fits", "NAXIS1"),
        ),
        Case("info-symlink-loop", mk_info_loop, 1, ("loop_a.fits", "symbolic link loop")),
        Case(
            "info-shape-mismatch",
            info_with(lambda d: put_fits(d, "odd.fits", noise(1, (16, 17))[0])),
            1,
            ("odd.fits", "mismatch"),
        ),
    ]
    for fmt in ("fits", "tif", "zarr"):
        name = f"out.{fmt}"
        says = (name, "no space left on device (", "bytes free)")
        cases.append(
            Case(
                f"disk-full-{fmt}",
                mk_disk_full(name, False),
                1,
                says,
                out=f"full/{name}",
                tmpfs="128k",
            )
        )
        cases.append(
            Case(
                f"disk-full-{fmt}-keeps-old",
                mk_disk_full(name, True),
                1,
                says,
                out=f"full/{name}",
                tmpfs="128k",
            )
        )
    return cases


CASES = _cases()
assert len({c.id for c in CASES}) == len(CASES), "duplicate case ids"
