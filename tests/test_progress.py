"""Progress display: percentage and ETA for local schedulers and a dask.distributed cluster."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from dask.callbacks import Callback
from progress_lines import LINE, TTY

from stackengine.normalize.measure import measure_frames
from stackengine.progress import _Compute, _Phase, progress_context, progress_phase


def _slow(block: np.ndarray) -> np.ndarray:
    time.sleep(0.03)
    return block * 2.0 + 1.0


def _graph(n: int = 24) -> tuple[da.Array, float]:
    """A sum over ``n`` slow blocks, and its value worked out with numpy."""
    values = np.arange(n * 3, dtype=np.float64).reshape(n, 3)
    x = da.from_array(values, chunks=(1, 3)).map_blocks(_slow).sum()
    return x, float((values * 2.0 + 1.0).sum())


def _lines(text: str) -> list[re.Match]:
    out = [LINE.match(line) for line in text.splitlines()]
    assert all(out), text
    return out


class _Count(Callback):
    """dask's own count of the tasks run (independent of stackengine.progress)."""

    def __init__(self) -> None:
        self.n = 0

    def _posttask(self, *args: object) -> None:
        self.n += 1


def test_eta_line_hand_worked() -> None:
    phase = _Phase("measure", 1, t0=100.0)
    compute = _Compute(phase, 28)
    compute.done = 12
    phase.computes.append(compute)
    # 12/28 done after 7 s: 42 %, 8 of 20 marks, ETA 7 x (16/28) / (12/28) = 9.33 s
    assert phase.line(107.0, False) == (
        "measure   42% [########............] 12/28 tasks  elapsed 0:07  ETA 0:09"
    )
    compute.done = 0
    assert phase.line(3700.0 + 100.0, False).endswith("elapsed 1:01:40  ETA -:--")
    compute.done = 28
    assert "100% [####################] 28/28 tasks" in phase.line(101.0, True)
    assert phase.line(101.0, True).endswith("failed")


@pytest.mark.parametrize("scheduler", ["threads", "sync"])
def test_local_schedulers_print_percentage_and_eta(scheduler: str) -> None:
    x, expected = _graph()
    out, count = io.StringIO(), _Count()
    with progress_context(stream=out, interval=0.05), count:
        result = x.compute(scheduler=scheduler, num_workers=2)
    assert result == expected
    lines = _lines(out.getvalue())
    pct = [int(m["pct"]) for m in lines]
    assert pct == sorted(pct) and pct[-1] == 100 and len(lines) >= 3
    assert len({p // 10 for p in pct[:-1]}) == len(pct) - 1  # one line per 10 % step
    assert all(m["label"] == "stacking" for m in lines)
    middle = lines[0]
    assert 0 < int(middle["pct"]) < 100 and re.fullmatch(r"ETA \d+:\d\d", middle["eta"])
    assert lines[-1]["count"] == f"{count.n}/{count.n} tasks"
    assert lines[-1]["eta"] == "ETA 0:00"


def test_terminal_redraws_one_line_in_place() -> None:
    x, expected = _graph(16)
    out = TTY()
    with progress_context("write", stream=out, interval=0.05):
        assert x.compute(scheduler="threads", num_workers=2) == expected
    text = out.getvalue()
    assert text.startswith("\r") and text.endswith("\n") and text.count("\n") == 1
    frames = [f.rstrip() for f in text.rstrip("\n").split("\r")[1:]]
    assert len(frames) >= 3 and all(LINE.match(f)["label"] == "write" for f in frames)
    assert frames[0].endswith("ETA -:--") and " 100% " in frames[-1]


def test_disabled_prints_nothing_and_results_unchanged() -> None:
    x, expected = _graph(6)
    out = TTY()
    with progress_context(enabled=False, stream=out):
        assert x.compute() == expected
    assert out.getvalue() == ""


def test_measure_pass_and_stack_are_separate_phases() -> None:
    rng = np.random.default_rng(1)
    frames = rng.normal(50.0, 3.0, (5, 40, 30))
    x, expected = _graph(8)
    out = io.StringIO()
    with progress_context(stream=out, interval=0.05):
        stats = measure_frames(xr.DataArray(frames, dims=("frame", "y", "x")))
        assert x.compute() == expected
    np.testing.assert_allclose(stats["location"], np.median(frames, axis=(1, 2)), rtol=1e-12)
    finals = [m for m in _lines(out.getvalue()) if m["pct"] == "100"]
    assert [m["label"] for m in finals] == ["measure", "stacking"]


def test_parts_make_one_phase() -> None:
    x, _ = _graph(12)
    out = io.StringIO()
    with progress_context(stream=out, interval=0.05), progress_phase("write", parts=3):
        results = [x.compute(scheduler="threads") for _ in range(3)]
    assert len(set(results)) == 1
    lines = _lines(out.getvalue())
    pct = [int(m["pct"]) for m in lines]
    assert pct == sorted(pct) and pct.count(100) == 1 and pct[-1] == 100
    assert lines[-1]["count"].endswith("part 3/3") and {m["label"] for m in lines} == {"write"}
    parts = [int(m["count"].split("part ")[1][0]) for m in lines]
    assert parts == sorted(parts) and parts[0] < 3  # percentages spread over the three


def test_phase_in_a_generator_closed_by_its_consumer() -> None:
    """A writer's batches run in a generator that its consumer closes when done."""
    x, expected = _graph(4)

    def batches(n: int) -> Iterator[float]:
        with progress_phase(parts=n):
            for _ in range(n):
                yield x.compute(scheduler="sync")

    out = io.StringIO()
    with progress_context(stream=out):
        whole = batches(2)
        assert [next(whole), next(whole)] == [expected, expected]
        whole.close()  # after the last part: complete
        cut = batches(3)
        assert next(cut) == expected
        cut.close()  # one part of three: failed
    finals = _lines(out.getvalue())
    assert [(m["pct"], m["eta"]) for m in finals] == [("100", "ETA 0:00"), ("33", "failed")]


def test_failure_ends_the_line_and_is_raised() -> None:
    def boom(block: np.ndarray) -> np.ndarray:
        raise RuntimeError("boom")

    out = io.StringIO()
    with pytest.raises(RuntimeError, match="boom"):
        with progress_context(stream=out):
            da.ones(4, chunks=1).map_blocks(boom, dtype=float).sum().compute(scheduler="sync")
    assert _lines(out.getvalue())[-1]["eta"] == "failed"
    out = io.StringIO()
    with progress_context(stream=out):  # a new block works after a failure
        assert da.ones(4, chunks=2).sum().compute() == 4
    assert _lines(out.getvalue())[-1]["pct"] == "100"


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        yield cluster


def _plugins(client) -> list[str]:
    return client.run_on_scheduler(
        lambda dask_scheduler: [n for n in dask_scheduler.plugins if "stackengine" in n]
    )


def test_distributed_cluster(cluster) -> None:
    from distributed import Client

    x, expected = _graph(30)
    frames = np.random.default_rng(2).normal(10.0, 1.0, (4, 20, 25))
    out = io.StringIO()
    with Client(cluster) as client:
        with progress_context(stream=out, interval=0.1):
            assert _plugins(client) != []
            assert x.compute() == expected
            stats = measure_frames(xr.DataArray(frames, dims=("frame", "y", "x")))
            with progress_phase(parts=2):
                assert dask.compute(x, x + 1) == (expected, expected + 1)
                assert x.compute() == expected
        assert _plugins(client) == []  # removed from the scheduler at exit
    np.testing.assert_allclose(stats["location"], np.median(frames, axis=(1, 2)), rtol=1e-12)
    lines = _lines(out.getvalue())
    finals = [m for m in lines if m["pct"] == "100"]
    assert [m["label"] for m in finals] == ["stacking", "measure", "stacking"]
    first = lines[: lines.index(finals[0]) + 1]
    assert len(first) >= 2 and 0 < int(first[0]["pct"]) < 100
    assert re.fullmatch(r"ETA \d+:\d\d", first[0]["eta"])
    done, total = map(int, finals[0]["count"].split()[0].split("/"))
    assert done == total >= 30  # every task of the graph, read from the scheduler
    assert finals[2]["count"].endswith("part 2/2")


def test_distributed_by_address(cluster) -> None:
    """No active client: the context connects to ``address`` and follows every graph."""
    from distributed import Client

    x, expected = _graph(20)
    out = io.StringIO()
    with Client(cluster, set_as_default=False) as client:
        with progress_context(stream=out, interval=0.1, address=cluster.scheduler_address):
            assert x.compute(scheduler=client) == expected
        assert _plugins(client) == []
    lines = _lines(out.getvalue())
    assert lines[-1]["pct"] == "100" and lines[-1]["eta"] == "ETA 0:00"
    assert any(0 < int(m["pct"]) < 100 for m in lines)
