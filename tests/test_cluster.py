"""dask.distributed: the compose file's commands on 127.0.0.1, LocalCluster, worker loss."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

import stackengine as se
from stackengine.cli import main
from stackengine.demo import make_frames

REPO = Path(__file__).resolve().parents[1]
VARIABLES = ("image", "count", "rejected_low", "rejected_high", "noise")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _same(a: xr.Dataset, b: xr.Dataset) -> None:
    for name in VARIABLES:
        np.testing.assert_array_equal(a[name].values, b[name].values)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    paths, _ = make_frames(folder, n_frames=12, size=256, seed=5)
    local = se.stack(se.open_frames(paths), memory_limit="256KiB").compute(scheduler="sync")
    return paths, local


def _compose_command(service: str, **subst: str) -> list[str]:
    spec = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    command = list(spec["services"][service]["command"])
    for old, new in subst.items():
        command = [c.replace(old, new) for c in command]
    return command


def test_compose_commands_on_localhost(frames, tmp_path):
    """Start `dask scheduler` and two `dask worker`s with the compose file's own commands
    (host names and paths mapped to 127.0.0.1 and tmp_path) and run its job command."""
    paths, local = frames
    port = str(_free_port())
    address = f"tcp://127.0.0.1:{port}"
    spec = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    assert spec["services"]["worker"]["deploy"]["replicas"] == 2
    bin_dir = Path(sys.executable).parent
    scheduler = _compose_command(
        "scheduler", **{"0.0.0.0": "127.0.0.1", "8786": port, ":8787": ":0"}
    )
    worker = _compose_command("worker", **{"tcp://scheduler:8786": address})
    job = _compose_command(
        "job",
        **{
            "tcp://scheduler:8786": address,
            "/data/frames": str(paths[0].parent),
            "/data/stack.zarr": str(tmp_path / "stack.zarr"),
        },
    )
    assert scheduler[:2] == ["dask", "scheduler"] and worker[:2] == ["dask", "worker"]
    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="False")
    procs = [
        subprocess.Popen(
            [str(bin_dir / "dask"), *scheduler[1:]],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        time.sleep(1.5)
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [str(bin_dir / "dask"), *worker[1:]],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        from distributed import Client

        with Client(address, timeout="20s") as client:
            client.wait_for_workers(2, timeout=30)
        assert job[0] == "stackengine"
        done = subprocess.run(
            [str(bin_dir / "stackengine"), *job[1:]], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        with xr.open_zarr(tmp_path / "stack.zarr") as result:
            _same(result.load(), local)
    finally:
        for p in procs[::-1]:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def test_local_cluster_same_bits_and_memory_limit(frames, tmp_path):
    paths, local = frames
    out = tmp_path / "w.zarr"
    assert (
        main(
            [
                "stack",
                *map(str, paths),
                "-o",
                str(out),
                "--workers",
                "2",
                "--memory-limit",
                "256KiB",
            ]
        )
        == 0
    )
    with xr.open_zarr(out) as result:
        _same(result.load(), local)
    from stackengine.tasks.cluster import WORKER_BASELINE, scheduler_context

    with scheduler_context(workers=2, memory_limit="300MiB") as client:
        limits = [w["memory_limit"] for w in client.scheduler_info()["workers"].values()]
        assert limits == [300 * 2**20 + WORKER_BASELINE] * 2
        # tiles are planned for the worker's own thread count
        res = se.stack(se.open_frames(paths), memory_limit="256KiB").compute()
    _same(res, local)


def test_worker_loss_recomputes_identically(frames):
    from distributed import Client, LocalCluster, wait

    paths, local = frames
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        res = se.stack(se.open_frames(paths), memory_limit="64KiB")
        assert res["image"].data.npartitions > 30
        futures = client.compute([res[name].data for name in VARIABLES])
        victim = sorted(client.scheduler_info()["workers"])[0]
        pid = client.run(os.getpid, workers=[victim])[victim]
        deadline = time.time() + 30
        while time.time() < deadline:
            finished = client.run_on_scheduler(
                lambda dask_scheduler: sum(
                    ts.state == "memory" for ts in dask_scheduler.tasks.values()
                )
            )
            if finished >= 5:
                break
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)  # the worker process dies mid-run; its nanny restarts it
        wait(futures, timeout=120)
        values = client.gather(futures)
    for name, value in zip(VARIABLES, values, strict=True):
        np.testing.assert_array_equal(value, local[name].values)
