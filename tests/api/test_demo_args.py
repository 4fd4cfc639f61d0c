"""``python -m bitplane.demo`` options: ``--spec``/``--out`` run another network with a demo
network's settings; bad values fail with one usage line before anything runs."""
from pathlib import Path

import numpy as np
import pytest

from bitplane import demo


def _captured(monkeypatch):
    seen = {}

    def fake_run(out_dir, rtl_frames, name, workers, cfg):
        seen.update(out=out_dir, frames=rtl_frames, name=name, workers=workers, cfg=cfg)
        return 0
    monkeypatch.setattr(demo, "run", fake_run)
    return seen


def test_spec_runs_with_the_net_settings(monkeypatch, tmp_path):
    spec = tmp_path / "fmnist-nin-w4a4.yaml"
    spec.write_text("name: x\n")
    seen = _captured(monkeypatch)
    assert demo.main(["--net", "nin", "--spec", str(spec)]) == 0
    assert seen["cfg"]["spec"] == spec.resolve()
    assert seen["out"] == demo.ROOT / "build" / "demo-fmnist-nin-w4a4"
    assert (seen["frames"], seen["workers"], seen["cfg"]["size"], seen["cfg"]["fps"]) == (256, 2, 32, 1000)
    assert demo.NETS["nin"]["spec"].name == "fmnist-nin-w2a2.yaml"      # the table is not modified
    assert demo.main(["--net", "nin", "--spec", str(spec), "--out", str(tmp_path / "r"), "--frames", "8"]) == 0
    assert (seen["out"], seen["frames"]) == ((tmp_path / "r").resolve(), 8)
    assert demo.main(["--net", "nin", "--target-fps", "500"]) == 0 and seen["cfg"]["fps"] == 500
    assert demo.NETS["nin"]["fps"] == 1000


def test_default_net_is_the_shipped_lenet(monkeypatch):
    seen = _captured(monkeypatch)
    assert demo.main([]) == 0
    assert seen["cfg"]["spec"] == demo.SPEC and seen["out"] == demo.ROOT / "build" / "demo"


@pytest.mark.parametrize("argv,msg", [
    (["--spec", "no/such.yaml"], "--spec no/such.yaml: no such file"),
    (["--frames", "2"], "--frames must be at least 3"),
    (["--net", "resnet20", "--workers", "0"], "--workers must be at least 1"),
    (["--target-fps", "0"], "--target-fps must be positive"),
])
def test_bad_options_fail_with_one_line(monkeypatch, capsys, argv, msg):
    seen = _captured(monkeypatch)
    with pytest.raises(SystemExit) as e:
        demo.main(argv)
    assert e.value.code == 2 and not seen
    err = capsys.readouterr().err.strip().splitlines()
    assert msg in err[-1] and "Traceback" not in "\n".join(err)


def test_shown_paths():
    assert demo._shown(demo.SPEC) == "examples/fmnist-lenet-w1a2.yaml"
    assert demo._shown(Path("/elsewhere/x.yaml")) == "/elsewhere/x.yaml"


def test_a_refused_spec_is_one_line(capsys, tmp_path):
    """A spec the loader refuses ends the demo with bitplane's one line and exit 1."""
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\nlayers: 7\n")
    assert demo.main(["--net", "nin", "--spec", str(spec), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"bitplane: error: {spec}: field 'input': missing"], err


def test_an_unreachable_rate_is_one_line(capsys, tmp_path):
    """A rate the planner cannot reach ends the demo with one line and exit 1, not a traceback
    (the shipped NIN's first convolution caps it near 1,000 frames/s at 100 MHz)."""
    assert demo.main(["--net", "nin", "--target-fps", "1e6", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("demo: error: layer '") and "cannot reach 1e+06 frames/s" in err[0], err


def test_classes_of_pooled_and_dense_logits():
    """NIN's logits keep the global pool's 1x1 map: the class is the argmax over all of a frame's
    values (argmax over axis 1 of [n, 10, 1, 1] would give [n, 1, 1] and a broadcast accuracy)."""
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(5, 10))
    assert np.array_equal(demo._classes(dense), dense.argmax(1))
    assert np.array_equal(demo._classes(dense[:, :, None, None]), dense.argmax(1))
    assert demo._classes(dense[:, :, None, None]).shape == (5,)
