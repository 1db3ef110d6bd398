"""Reading a tile's next strip while the kernel reduces the current one (io.prefetch).

The read-ahead path is taken when a task's first strip came from a disk
(``from_disk``); here it is forced on or off, on tiles of many small strips.
The stack must be the same bits either way and as from the frames in memory, a
file that cannot be read must still be named, and a task must not leave reads
running on its files.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import tifffile
from astropy.io import fits

import stackengine as se
from stackengine.errors import FrameError
from stackengine.tasks import prefetch
from stackengine.tasks import tile as tiles

OUTPUTS = ("image", "count", "rejected_low", "rejected_high", "noise")


@pytest.fixture
def small_strips(monkeypatch):
    monkeypatch.setattr(tiles, "STRIP_BYTES", 3000)  # several strips per tile
    monkeypatch.setattr(tiles, "MIN_READ_BYTES", 1)


@pytest.fixture
def count_reads(monkeypatch):
    """Count the reads submitted to the I/O pool."""
    calls = []
    real = prefetch.StripReader._submit

    def submit(self, i):
        calls.append(i)
        return real(self, i)

    monkeypatch.setattr(prefetch.StripReader, "_submit", submit)
    return calls


def frame_files(tmp_path, kind):
    rng = np.random.default_rng(5)
    data = rng.normal(1000.0, 30.0, (9, 41, 23))
    data[rng.random(data.shape) < 0.03] = 20000.0
    paths = []
    for i, frame in enumerate(data):
        if kind == "fits-f32":
            paths.append(tmp_path / f"f{i}.fits")
            fits.PrimaryHDU(frame.astype(np.float32)).writeto(paths[-1])
        elif kind == "fits-u16":  # BZERO 32768: read with a sign flip
            paths.append(tmp_path / f"u{i}.fits")
            fits.PrimaryHDU(frame.astype(np.uint16)).writeto(paths[-1])
        else:
            paths.append(tmp_path / f"t{i}.tif")
            tifffile.imwrite(paths[-1], frame.astype(np.uint16), rowsperstrip=3)
    return paths


@pytest.mark.parametrize("kind", ["fits-f32", "fits-u16", "tiff-u16"])
def test_read_ahead_gives_the_same_bits(tmp_path, monkeypatch, small_strips, count_reads, kind):
    paths = frame_files(tmp_path, kind)
    frames = se.open_frames(paths)
    kw = dict(reject="sigma", memory_limit="1MiB")
    monkeypatch.setattr(prefetch, "from_disk", lambda before, after, nbytes: True)
    ahead = se.stack(frames, **kw).compute()
    assert len(count_reads) > 0  # the strips after the first were read ahead
    monkeypatch.setattr(prefetch, "from_disk", lambda before, after, nbytes: False)
    count_reads.clear()
    plain = se.stack(frames, **kw).compute()
    assert count_reads == []  # from the page cache: read in the task's thread
    in_memory = se.stack(frames.compute(), **kw).compute()
    for name in OUTPUTS:
        np.testing.assert_array_equal(ahead[name].values, plain[name].values)
        np.testing.assert_array_equal(ahead[name].values, in_memory[name].values)


def test_switched_off_by_the_environment(tmp_path, monkeypatch, small_strips, count_reads):
    frames = se.open_frames(frame_files(tmp_path, "fits-f32"))
    monkeypatch.setattr(prefetch, "from_disk", lambda before, after, nbytes: True)
    monkeypatch.setenv("STACKENGINE_PREFETCH", "0")
    se.stack(frames, memory_limit="1MiB").compute()
    assert count_reads == []


def test_a_file_cut_short_is_named(tmp_path, monkeypatch, small_strips):
    paths = frame_files(tmp_path, "fits-f32")
    frames = se.open_frames(paths)
    paths[4].write_bytes(paths[4].read_bytes()[: 2880 + 23 * 4 * 30])  # 30 rows left
    monkeypatch.setattr(prefetch, "from_disk", lambda before, after, nbytes: True)
    with pytest.raises(FrameError, match=r"u?f4\.fits: truncated"):
        # one thread: no other task of this stack goes on reading after the error
        se.stack(frames, memory_limit="1MiB").compute(scheduler="synchronous")


def test_waits_on_disk_by_time_off_the_cpu():
    assert prefetch.waits_on_disk(0.010, 0.002)  # waited 80 % of the read
    assert not prefetch.waits_on_disk(0.010, 0.005)  # half: a busy machine, not a disk
    assert not prefetch.waits_on_disk(0.010, 0.009)  # a copy (page faults included)
    assert not prefetch.waits_on_disk(0.0005, 0.0)  # too short to overlap anything


def test_from_disk_by_the_bytes_fetched(tmp_path):
    """A strip from the page cache fetches nothing from the storage, whatever the time
    says; one evicted from the cache first is fetched (where the system counts it)."""
    path = tmp_path / "f.bin"
    path.write_bytes(np.random.default_rng(0).bytes(4 << 20))
    slow = (0, 0.0, 0.0), (0, 1.0, 0.0)  # one second off the CPU, nothing fetched
    assert not prefetch.from_disk(*slow, nbytes=4 << 20)
    assert prefetch.from_disk((0, 0.0, 0.0), (2 << 20, 1.0, 0.0), nbytes=4 << 20)
    # no byte counts: the time decides
    assert prefetch.from_disk((None, 0.0, 0.0), (None, 0.01, 0.002), nbytes=1)
    assert not prefetch.from_disk((None, 0.0, 0.0), (None, 0.01, 0.009), nbytes=1)
    if prefetch._fetched() is None:
        return
    with open(path, "rb") as fh:
        fh.read()  # in the cache now
        before = prefetch._probe()
        fh.seek(0)
        fh.read()
        assert not prefetch.from_disk(before, prefetch._probe(), 4 << 20)
        os.fsync(fh.fileno())
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        before = prefetch._probe()
        fh.seek(0)
        fh.read()
        after = prefetch._probe()
    if after[0] > before[0]:  # (tmpfs has no storage: the page cache is all there is)
        assert prefetch.from_disk(before, after, 4 << 20)


def test_a_task_waits_for_its_reads(tmp_path, monkeypatch, small_strips):
    """The kernel fails on a strip while the next one is being read: the task waits
    for that read before it closes its files, and no read sees a closed file."""
    frames = se.open_frames(frame_files(tmp_path, "fits-f32"))
    monkeypatch.setattr(prefetch, "from_disk", lambda before, after, nbytes: True)
    seen = {"reads": 0, "closed": 0, "inflight": 0}
    lock = threading.Condition()
    real_read = prefetch.read_rows_batch

    def slow_read(layout, frames_, ks, y0, raw, handles):
        if not str(handles[ks[0]].name).startswith(str(tmp_path)):  # another test's task
            return real_read(layout, frames_, ks, y0, raw, handles)
        with lock:
            seen["inflight"] += 1
            lock.notify_all()
        time.sleep(0.05)
        with lock:
            seen["reads"] += 1
            seen["inflight"] -= 1
            seen["closed"] += sum(handles[k].closed for k in ks)
        return real_read(layout, frames_, ks, y0, raw, handles)

    monkeypatch.setattr(prefetch, "read_rows_batch", slow_read)

    def failing_reduce(block, y0, x0, args, out):
        with lock:  # fail while a read of the next strip is in flight
            assert lock.wait_for(lambda: seen["inflight"] > 0, timeout=5)
        raise RuntimeError("kernel failed")

    monkeypatch.setattr(tiles, "_reduce", failing_reduce)
    with pytest.raises(RuntimeError, match="kernel failed"):
        se.stack(frames, memory_limit="1MiB").compute(scheduler="synchronous")
    assert seen["inflight"] == 0  # the task returned after its reads
    assert seen["reads"] > 0 and seen["closed"] == 0
