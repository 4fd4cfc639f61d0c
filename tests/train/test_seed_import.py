"""Importing state_dicts written by the pytorch DoReFa seed's code (train/seed_import.py).

The reference tensors come from the seed's own model classes (tests/data/pytorch-dorefa-seed/
make_reference.py ran them, unmodified, at onion-rain/MCTS 7482e92); the state dict is that
script's, rebuilt from the layout the seed's code wrote and the same seeded values."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bitplane.core.errors import NotSupportedError, SpecError  # noqa: E402
from bitplane.gen.golden import Golden  # noqa: E402
from bitplane.gen.spec import load_network  # noqa: E402
from bitplane.train.nn import export  # noqa: E402
from bitplane.train.seed_import import import_seed  # noqa: E402
from tests.support.dorefa_seed import DATA, layouts, seed_state_dict  # noqa: E402

# the seed's prefix that bitplane's static graph computes the same way, and its batchnorm here
PREFIX_END = {"nin": "sequential.6.norm", "resnet20": "features.1.norm2"}


@pytest.fixture(scope="module")
def ref():
    with np.load(DATA / "reference.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _checkpoint(tmp_path, arch, **edit):
    sd = seed_state_dict(layouts()[arch], 0)
    sd.update(edit)
    path = tmp_path / f"{arch}.pth"
    torch.save({"state_dict": sd}, path)
    return path


@pytest.mark.parametrize("arch", ["nin", pytest.param("resnet20", marks=pytest.mark.slow)])
def test_seed_checkpoint_imports_and_matches_the_seeds_own_forward(arch, ref, tmp_path):
    x = ref["x"]
    # one calibration batch = the seed's eval batch: the frozen ranges are that batch's maxima
    model, notes = import_seed(_checkpoint(tmp_path, arch), arch, 2, 2, x, arch, batch=len(x))
    assert "3 input channels" in notes[0]
    model = model.double()
    model.eval()
    with torch.no_grad():
        want = model(torch.from_numpy(x / 255.0)).numpy().reshape(len(x), -1)
    export(model, tmp_path / f"{arch}.yaml")
    net = load_network(tmp_path / f"{arch}.yaml")
    got, trace = Golden(net).run_float(x, trace=True)
    got = got.reshape(len(x), -1)
    # golden float path == the PyTorch model (float tolerance)
    assert np.max(np.abs(got - want)) <= 1e-9 * np.max(np.abs(want))
    # ... and, up to the first structure quantized differently, == the seed's own eval forward
    pre = np.maximum(trace[PREFIX_END[arch]], 0.0).reshape(len(x), -1)
    assert list(trace[PREFIX_END[arch]].shape[1:]) == ref[f"{arch}_shape"].tolist()
    seed = ref[f"{arch}_value"]
    assert np.max(np.abs(pre[:, ref[f"{arch}_index"]] - seed)) <= 1e-4 * np.max(np.abs(seed))


def test_unknown_missing_and_misshapen_tensors_are_refused(tmp_path, ref):
    x = ref["x"]
    with pytest.raises(SpecError, match=r"does not take: sequential\.99\.conv\.weight"):
        import_seed(_checkpoint(tmp_path, "nin", **{"sequential.99.conv.weight": torch.zeros(1)}),
                    "nin", 2, 2, x, "n")
    sd = seed_state_dict(layouts()["resnet20"], 0)
    del sd["features.4.conv_shortcut.weight"]
    torch.save(sd, tmp_path / "r.pth")
    with pytest.raises(SpecError, match=r"missing tensor 'features\.4\.conv_shortcut\.weight'"):
        import_seed(tmp_path / "r.pth", "resnet20", 2, 2, x, "r")
    with pytest.raises(SpecError, match=r"'features\.0\.norm1\.running_var' has shape \[3\]"):
        import_seed(_checkpoint(tmp_path, "resnet20", **{"features.0.norm1.running_var": torch.ones(3)}),
                    "resnet20", 2, 2, x, "r")
    with pytest.raises(NotSupportedError, match="1-bit weights"):
        import_seed(_checkpoint(tmp_path, "nin"), "nin", 1, 2, x, "n")
