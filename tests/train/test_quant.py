"""Training quantizers (train/quant.py): forward passes equal gen.quant's reference formulas
element by element; straight-through gradients as in the seeds; DoReFa's gradient quantizer
against its formula (grid, per-sample scaling, unbiasedness in expectation)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bitplane.gen import quant as ref  # noqa: E402
from bitplane.train import quant as tq  # noqa: E402
from tests.support.networks import small_spec  # noqa: E402



@pytest.fixture(autouse=True)
def _float64_default():
    """These tests compare against NumPy float64 formulas; the default dtype is process-wide, so
    restore it afterwards (other tests in the same xdist worker train float32 models)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _w(shape=(6, 3, 3, 3), seed=0):
    return np.random.default_rng(seed).normal(0, 0.3, shape)


@pytest.mark.parametrize("qspec", [{"type": "dorefa", "bits": 1}, {"type": "dorefa", "bits": 2},
                                   {"type": "dorefa", "bits": 4}, {"type": "sign"}, {"type": "int", "bits": 8},
                                   {"type": "int", "bits": 3}])
def test_weight_forward_matches_reference(qspec):
    W = _w()
    t = torch.tensor(W, requires_grad=True)
    k = qspec.get("bits", 1)
    if qspec["type"] == "dorefa":
        got = tq.dorefa_weights(t, k)
    elif qspec["type"] == "sign":
        got = tq.sign_ste(t)
    else:
        got = tq.int_weights(t, k)
    want = ref.fake_quant_weights(qspec, W)
    assert np.array_equal(got.detach().numpy(), want)
    got.sum().backward()
    assert t.grad is not None and torch.isfinite(t.grad).all()


def test_straight_through_gradients():
    W = torch.tensor([-2.0, -0.5, 0.2, 1.5], requires_grad=True)
    tq.sign_ste(W).sum().backward()
    assert W.grad.tolist() == [0.0, 1.0, 1.0, 0.0]              # hardtanh STE
    W2 = torch.tensor([-0.3, 0.1, 0.7], requires_grad=True)
    tq.dorefa_weights(W2, 1).sum().backward()                   # BWN: E held constant, sign STE
    assert torch.allclose(W2.grad, torch.ones(3) * W2.abs().mean())
    x = torch.tensor([0.1, 0.4, 0.9], requires_grad=True)
    tq.dorefa_acts(x, 2).sum().backward()                       # round straight-through
    assert x.grad.tolist() == [1.0, 1.0, 1.0]


def test_static_tanh_activation_matches_reference_and_keeps_a_moving_range():
    from bitplane.train.nn import QNet
    x = np.maximum(np.random.default_rng(5).normal(0, 1.5, 4000), 0)
    for k, r in ((2, 0.8), (4, 1.0), (3, 0.35)):
        aq = ref.ActQuant({"type": "tanh", "bits": k, "range": r}, "relu")
        t = torch.tensor(x, requires_grad=True)
        got = tq.tanh_acts(t, k, torch.tensor(r))
        assert np.array_equal(got.detach().numpy(), aq.apply(x))
        assert np.array_equal(aq.decode(aq.index(x)), aq.apply(x))
        got.sum().backward()
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    spec = {"name": "t", "input": {"shape": [1, 4, 4], "bits": 8, "scale": 1 / 255}, "layers": [
        {"name": "c", "op": "conv", "out_channels": 3, "kernel": 3, "padding": 1},
        {"name": "a", "op": "quant_act", "nonlin": "relu", "quant": {"type": "tanh", "bits": 2, "range": 1.0}},
        {"name": "d", "op": "dense", "out_features": 2}]}
    m = QNet(spec, seed=0)
    xb = torch.rand(5, 1, 4, 4)
    with torch.no_grad():
        z = torch.relu(torch.nn.functional.conv2d(xb, m.p("c/W"), padding=1))
        m.train()
        m(xb)
    # training: normalised by the batch's max|tanh| (as the seed), the frozen range moves 10 % towards it
    assert float(m.range__a) == pytest.approx(0.9 + 0.1 * float(torch.tanh(z).abs().max()), rel=1e-12)


def test_ttq_forward_and_gradients():
    W = _w((4, 8), seed=3)
    wp, wn = torch.tensor(0.7, requires_grad=True), torch.tensor(0.4, requires_grad=True)
    t = torch.tensor(W, requires_grad=True)
    y = tq.ttq_weights(t, wp, wn)
    assert np.array_equal(y.detach().numpy(), ref.fake_quant_weights({"type": "ttq"}, W, {"Wp": 0.7, "Wn": 0.4}))
    g = torch.tensor(np.random.default_rng(1).normal(size=W.shape))
    (y * g).sum().backward()
    th = 0.05 * np.abs(W).max()
    pos, neg = W > th, W < -th
    assert np.isclose(wp.grad.item(), g.numpy()[pos].sum())
    assert np.isclose(wn.grad.item(), -g.numpy()[neg].sum())
    want = np.where(pos, 0.7 * g.numpy(), np.where(neg, 0.4 * g.numpy(), g.numpy()))
    assert np.allclose(t.grad.numpy(), want)


def test_lq_weights_and_acts_match_reference_and_qem_reduces_error():
    W = _w((5, 2, 3, 3), seed=4)
    v = tq.lq_init(2, 0.1, channels=5)
    t = torch.tensor(W, requires_grad=True)
    y, codes = tq.lq_weights(t, v)
    q = ref.quantize_weights({"type": "lq", "bits": 2}, W, {"basis": v.numpy()})
    assert np.array_equal(y.detach().numpy(), ref.fake_quant_weights({"type": "lq", "bits": 2}, W,
                                                                       {"basis": v.numpy()}))
    assert np.array_equal(codes.numpy(), q.codes)
    err0 = ((y - t) ** 2).sum().item()
    for _ in range(10):                                         # QEM: error never grows much, ends lower
        v = tq.lq_qem_update(v, t.detach().reshape(5, -1), codes.reshape(5, -1), signed=True, momentum=0.0)
        y, codes = tq.lq_weights(t, v)
    assert ((y - t) ** 2).sum().item() < err0
    # activations: per-layer basis, clipped at the top level, gradient zero above it
    va = tq.lq_init(2, 0.25)
    x = torch.tensor([0.0, 0.1, 0.3, 0.6, 2.0], requires_grad=True)
    ya, _ = tq.lq_acts(x, va)
    aq = ref.ActQuant({"type": "lq", "bits": 2}, "relu", {"basis": va.numpy()})
    assert np.array_equal(ya.detach().numpy(), aq.fake_quant(x.detach().numpy()))
    ya.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]


def test_gradient_quantizer_formula_grid_and_unbiasedness():
    gen = torch.Generator().manual_seed(0)
    g = torch.tensor(np.random.default_rng(2).normal(size=(4, 50)))
    k = 4
    n = 2 ** k - 1
    q = tq.grad_quantizer(g, k, gen)
    maxx = g.abs().amax(dim=1, keepdim=True)
    # on the grid 2*maxx*(j/n - 1/2), per sample
    j = (q / (2 * maxx) + 0.5) * n
    assert torch.allclose(j, torch.round(j), atol=1e-9) and (j >= 0).all() and (j <= n).all()
    # unbiased in expectation: mean over many draws -> g (error ~ step/sqrt(draws))
    draws = torch.stack([tq.grad_quantizer(g, k, gen) for _ in range(4000)])
    step = 2 * maxx / n
    assert (draws.mean(0) - g).abs().max() < 0.03 * step.max() * 10
    assert ((draws.mean(0) - g).abs() / step).mean() < 0.02
    # each element takes one of the two neighbouring grid values around g (stochastic rounding)
    lo = torch.floor((g / (2 * maxx) + 0.5) * n)
    jj = (draws / (2 * maxx) + 0.5) * n
    assert ((jj - lo).round().abs() <= 1).all()
    # 1-bit: values are +-maxx only
    q1 = tq.grad_quantizer(g, 1, gen)
    assert torch.allclose(q1.abs(), maxx.expand_as(q1))


def test_quantize_grad_is_identity_forward_and_quantizes_backward():
    x = torch.randn(3, 7, requires_grad=True)
    y = tq.quantize_grad(x, 2, torch.Generator().manual_seed(1))
    assert torch.equal(y, x)
    up = torch.randn(3, 7)
    (y * up).sum().backward()
    maxx = up.abs().amax(dim=1, keepdim=True)
    j = (x.grad / (2 * maxx) + 0.5) * 3
    assert torch.allclose(j, torch.round(j), atol=1e-9)
    x2 = torch.randn(2, 2, requires_grad=True)
    (tq.quantize_grad(x2, 32) * 3).sum().backward()
    assert torch.equal(x2.grad, torch.full((2, 2), 3.0))


# ---------------------------------------------------------------------------- model + export


@pytest.mark.parametrize("wq,aq,nonlin,gbits", [
    ({"type": "dorefa", "bits": 1}, {"type": "dorefa", "bits": 2}, "clip01", 6),
    ({"type": "dorefa", "bits": 2}, {"type": "dorefa", "bits": 2}, "cabs", None),
    ({"type": "sign"}, {"type": "sign"}, "none", None),
    ({"type": "ttq"}, {"type": "dorefa", "bits": 2}, "clip01", None),
    ({"type": "lq", "bits": 2}, {"type": "lq", "bits": 2}, "relu", None),
    ({"type": "dorefa", "bits": 2}, {"type": "tanh", "bits": 2, "range": 1.0}, "relu", None)])
def test_export_reproduces_torch_eval_logits(wq, aq, nonlin, gbits, tmp_path):
    from bitplane.gen.golden import Golden
    from bitplane.gen.spec import load_network
    from bitplane.train.nn import QNet, export
    model = QNet(small_spec("t", wq, aq, nonlin), grad_bits=gbits, seed=1)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (16, 1, 12, 12)).astype(np.uint8)
    x = torch.tensor(codes / 255.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    y = torch.tensor(rng.integers(0, 5, 16))
    model.train()
    for _ in range(3):                                   # move weights, BN statistics and LQ bases
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    model.eval()
    with torch.no_grad():
        want = model(x).numpy()
    path = export(model, tmp_path / "t.yaml")
    got = Golden(load_network(path)).run_float(codes)
    assert np.allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
