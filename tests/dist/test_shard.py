"""Sharded RTL simulation on Dask (sim/shard.py, ``bitplane sim --workers``): a local cluster of
two worker processes gives byte-identical output to the single-process run, and a worker killed
in the middle of a shard neither loses, duplicates nor reorders frames (Dask reruns the shard)."""
from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from bitplane.cli.main import main as cli
from bitplane.gen.compile import compile_network
from bitplane.gen.golden import Golden
from bitplane.gen.spec import load_network
from bitplane.sim.cluster import dask_client
from bitplane.sim.shard import shard_bounds, simulate_sharded

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
SPEC = ROOT / "examples" / "tfc-w1a1.yaml"          # small: 4,096 cycles/frame at 20,000 frames/s


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    out = tmp_path_factory.mktemp("tfc") / "hw"
    compile_network(load_network(SPEC), out, target_fps=20000, progress=lambda s: None)
    return out


def _frames(n, seed=0):
    # distinct random frames, so any reordering, loss or duplication changes the output
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 28, 28)).astype(np.uint8)


def test_shard_bounds_are_contiguous_and_cover_every_frame():
    for n, k in [(10, 3), (7, 7), (5, 8), (2000, 2), (1, 4)]:
        b = shard_bounds(n, k)
        assert b[0][0] == 0 and b[-1][1] == n and len(b) == min(n, k)
        assert all(b[i][1] == b[i + 1][0] for i in range(len(b) - 1))
        sizes = [hi - lo for lo, hi in b]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_two_local_workers_byte_identical_to_single_process(design, tmp_path, capsys):
    x = _frames(30)
    np.save(tmp_path / "x.npy", x)
    assert cli(["sim", str(design), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "one.npy")]) == 0
    assert cli(["sim", str(design), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "two.npy"),
                "--workers", "2", "--stall-pct", "20"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "one.npy").read_bytes() == (tmp_path / "two.npy").read_bytes()
    assert np.array_equal(np.load(tmp_path / "two.npy"), Golden(load_network(SPEC)).run_int(x))
    # one row per shard with its measured cycles/frame and the worker that ran it
    rows = [line for line in out.splitlines() if line.strip().startswith("shard ")]
    assert len(rows) == 2 and "frames 0..14 on tcp://" in rows[0] and "frames 15..29 on tcp://" in rows[1]
    assert all("cycles/frame" in r for r in rows)


def test_worker_killed_mid_shard_loses_no_frame(design):
    x = _frames(96, seed=1)
    want = Golden(load_network(SPEC)).run_int(x)
    killed = {}
    with dask_client(workers=2) as client:
        def killer():
            # wait until a worker is executing a shard, then SIGKILL that worker process
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                busy = client.run(lambda dask_worker: (os.getpid(),
                                                       [str(ts.key) for ts in dask_worker.state.executing]))
                for _addr, (pid, keys) in busy.items():
                    if any("shard" in k for k in keys):
                        time.sleep(0.5)                      # well inside the shard's simulation
                        os.kill(pid, signal.SIGKILL)
                        killed.update(pid=pid, keys=keys)
                        break
                time.sleep(0.05)
        t = threading.Thread(target=killer)
        t.start()
        y, st = simulate_sharded(design, x, client, shards=4)
        t.join()
        pids_after = set(client.run(os.getpid).values())
    assert killed, "no worker was seen executing a shard"
    assert killed["pid"] not in pids_after                     # that process really died
    assert np.array_equal(y, want)                             # every frame once, in order
    assert [r["first"] for r in st["shards"]] == [0, 24, 48, 72] and sum(r["frames"] for r in st["shards"]) == 96


def test_unreachable_scheduler_one_line_error_within_seconds(design, tmp_path, capsys):
    np.save(tmp_path / "x.npy", _frames(2))
    t0 = time.monotonic()
    rc = cli(["sim", str(design), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"),
              "--scheduler", "tcp://127.0.0.1:9"])
    dt = time.monotonic() - t0
    err = capsys.readouterr().err
    assert rc == 1 and dt < 20          # 3 s connect timeout + imports on a loaded CI machine
    assert err.strip().splitlines()[-1].startswith("bitplane: error: cannot reach the Dask scheduler at "
                                                   "'tcp://127.0.0.1:9'")
    assert "Traceback" not in err and not (tmp_path / "y.npy").exists()
