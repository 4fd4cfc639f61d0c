"""``bitplane sweep`` (cli/sweep.py): malformed sweep files are refused naming the field with
nothing written; a failing point is reported with its error while the others complete; a rerun
computes only what is missing (results cached by design hash)."""
from __future__ import annotations

import csv
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
    assert err[-1].startswith("bitplane: error: cannot reach the Dask scheduler") and not (tmp_path / "out").exists()


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
