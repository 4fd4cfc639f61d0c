"""FINN's reference networks as Brevitas 0.13.4 exports them, through ``bitplane import qonnx``.

Every ``brevitas_examples.bnn_pynq`` configuration (``model_with_cfg(name, pretrained=False)``,
statistics calibrated on real images, see ``tests/support/finn_zoo.py``) is exported by both exporters
in the test and imported with no extra flags. Checked: golden float within 1e-5 relative of
qonnx's ``execute_onnx`` on the same uint8 images (qonnx given image/255), golden float and int
decisions identical to qonnx's, and the compiled RTL equal to the golden int path (under
backpressure and back to back). Default suite: TFC-W1A2 (both exporters, RTL once: the two
exports import to the identical spec); the rest are ``slow``.
"""
from __future__ import annotations

import pytest

from bitplane.cli.main import main as cli
from bitplane.gen.spec import load_network
from tests.support import finn_zoo as fz

pytest.importorskip("torch")
pytest.importorskip("onnxoptimizer")
pytest.importorskip("brevitas_examples.bnn_pynq")
pytest.importorskip("qonnx")

N_COMPARE = 100      # images compared with qonnx per export


def _import(name, model, exporter, tmp_path, capsys):
    onnx_path = fz.export(model, name, exporter, tmp_path / f"{name}-{exporter}.onnx")
    out = tmp_path / f"{name}-{exporter}.yaml"
    assert cli(["import", "qonnx", str(onnx_path), "-o", str(out)]) == 0
    cap = capsys.readouterr()
    assert "input stage" in cap.err          # 2x-1 and the signed/bipolar input quantizer: on chip
    return onnx_path, out


def _check_against_qonnx(name, onnx_path, yaml_path):
    x = fz.images(name, "test")[:N_COMPARE]
    r = fz.compare(yaml_path, onnx_path, x)
    assert r["rel_err"] <= 1e-5, r
    assert r["float_agree"] == 1.0 and r["int_agree"] == 1.0, r
    return r


def _rtl(name, yaml_path, tmp_path, frames):
    x = fz.images(name, "test")[:frames]
    r = fz.rtl(yaml_path, tmp_path / "hw", x, fz.TARGET_FPS[name.split("_")[0]])
    assert r["exact"], r
    if r["simulated"] is not None:
        assert abs(r["simulated"] - r["planned"]) <= 0.05 * r["planned"], r


def test_tfc_w1a2_both_exporters_import_match_qonnx_and_run_in_rtl(tmp_path, capsys):
    model = fz.build("tfc_1w2a")
    paths = {e: _import("tfc_1w2a", model, e, tmp_path, capsys) for e in fz.EXPORTERS}
    net = load_network(paths["torchscript"][1])
    acts = [L["quant"] for L in net.layers if L.op == "quant_act"]
    assert acts[0] == {"type": "int", "bits": 2, "narrow": True, "scale": 1.0}   # the input quantizer
    assert all(q["type"] == "int" and q["narrow"] for q in acts)                 # signed narrow A2
    assert net.layers[0].op == "batchnorm" and net.layers[-1].op == "batchnorm"  # 2x-1, TensorNorm
    for onnx_path, yaml_path in paths.values():
        _check_against_qonnx("tfc_1w2a", onnx_path, yaml_path)
    assert fz.same_spec(paths["torchscript"][1], paths["dynamo"][1])
    _rtl("tfc_1w2a", paths["torchscript"][1], tmp_path, 3)


SLOW = [(n, e) for n in fz.ZOO for e in fz.EXPORTERS if n != "tfc_1w2a"]


@pytest.mark.slow
@pytest.mark.parametrize("name,exporter", SLOW)
def test_zoo_model_imports_and_matches_qonnx(name, exporter, tmp_path, capsys):
    model = fz.build(name)
    onnx_path, yaml_path = _import(name, model, exporter, tmp_path, capsys)
    _check_against_qonnx(name, onnx_path, yaml_path)
    if exporter == "torchscript":          # both exports import to the same spec (checked for TFC)
        _rtl(name, yaml_path, tmp_path, 2 if name.startswith("cnv") else 3)
