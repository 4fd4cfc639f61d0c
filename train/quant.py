"""Quantizers for training (PyTorch), with the seeds' straight-through estimators.

Forward passes are docs/design.md section 4 exactly (the same formulas as ``gen.quant``, which the
tests compare against element by element); backward passes are the seeds':

* DoReFa weights, k >= 2: ``w = 2 q_k(tanh(W)/max|tanh(W)|/2 + 1/2) - 1``, the rounding is
  straight-through and the tanh normalisation is differentiated (tensorpack ``fw``);
  k = 1 (BWN): ``w = E sign(W)``, ``E = mean|W|`` held constant, sign straight-through.
* DoReFa activations: ``q_k`` straight-through after ``clip01``/``cabs`` (which carry their
  own gradients); :func:`quantize_grad` is DoReFa's k-bit gradient quantizer (identity
  forward; backward: per-sample max scaling, uniform noise of one step, k-bit rounding).
* BNN ``sign``: straight-through where ``|x| <= 1`` (hardtanh), for weights and activations.
* TTQ: ternary with learned ``Wp``, ``Wn`` (> 0); ``dL/dWp = sum`` of the gradients of the
  weights at ``+Wp``, ``dL/dWn = -sum`` at ``-Wn``; latent gradients scaled by ``Wp``/1/``Wn``.
* LQ-Nets: nearest level of a learned basis (weights: per output channel, b in {-1, +1};
  activations: per layer, b in {0, 1}), straight-through (activations: inside the top level);
  bases updated by :func:`lq_qem_update` (least squares on the current codes, moving average).
* ``int``: symmetric per output channel, straight-through.
* ``tanh`` activations (the pytorch DoReFa seed's quantizer made static): ``q_k(clip01((tanh(x)
  / r + 1) / 2))``; in training ``r`` is the batch's ``max|tanh(x)|`` as in the seed (held
  constant in the backward pass; ``tanh`` and the affine map are differentiated, the
  rounding is straight-through), and an exponential moving average of it is kept
  (:func:`tanh_range_update`, like batchnorm's running statistics); eval mode and the export
  use that frozen ``r`` (the spec's ``range``).
* ``uint`` activations (``clip(rnd(x / s), 0, 2^k - 1) * s``): the same static-range scheme,
  ``s`` = the batch's maximum / (2^k - 1) in training, its moving average frozen for eval.
"""
from __future__ import annotations

import torch

# --------------------------------------------------------------------------- helpers


def _round(x):
    return torch.round(x)          # round half to even, as numpy and the spec


def q_k(x, k: int):
    n = float((1 << k) - 1)
    return _round(x * n) / n


class _STE(torch.autograd.Function):
    """``forward(x, y) = y``, gradient to ``x`` unchanged (y computed without autograd)."""

    @staticmethod
    def forward(ctx, x, y):
        return y

    @staticmethod
    def backward(ctx, g):
        return g, None


def ste(x, y):
    """Value ``y``, gradient of the identity in ``x``."""
    return _STE.apply(x, y.detach())


def sign(x):
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class _SignHtanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


def sign_ste(x):
    """BNN sign with the hardtanh straight-through estimator."""
    return _SignHtanh.apply(x)


# --------------------------------------------------------------------------- weights

def dorefa_weights(W, k: int):
    if k == 1:
        E = W.abs().mean().detach()
        return ste(W, sign(W)) * E if E > 0 else ste(W, sign(W)) * 0.0
    t = torch.tanh(W)
    mx = t.abs().max().detach()
    t = t / mx * 0.5 + 0.5 if mx > 0 else torch.full_like(t, 0.5)
    return 2 * ste(t, q_k(t, k)) - 1


class _TTQ(torch.autograd.Function):
    @staticmethod
    def forward(ctx, W, wp, wn):
        th = 0.05 * W.abs().max()
        pos, neg = W > th, W < -th
        ctx.save_for_backward(pos, neg, wp, wn)
        return torch.where(pos, wp, torch.where(neg, -wn, torch.zeros_like(W)))

    @staticmethod
    def backward(ctx, g):
        pos, neg, wp, wn = ctx.saved_tensors
        gW = torch.where(pos, wp * g, torch.where(neg, wn * g, g))
        return gW, (g * pos).sum().reshape(wp.shape), -(g * neg).sum().reshape(wn.shape)


def ttq_weights(W, wp, wn):
    return _TTQ.apply(W, wp, wn)


def int_weights(W, k: int):
    M = float((1 << (k - 1)) - 1)
    Wc = W.reshape(W.shape[0], -1)
    s = (Wc.abs().amax(dim=1, keepdim=True) / M).detach()
    s = torch.where(s > 0, s, torch.ones_like(s))
    return ste(W, (s * torch.clamp(_round(Wc / s), -M, M)).reshape(W.shape))


def lq_levels(v, signed: bool):
    """Levels of every code for basis ``v`` (``[P]`` or ``[P, C]``): ``[2^P]`` or ``[2^P, C]``;
    bit ``j`` of a code selects ``+v_j`` (or ``-v_j`` when clear and ``signed``)."""
    P = v.shape[0]
    codes = torch.arange(1 << P, device=v.device)
    bits = ((codes[:, None] >> torch.arange(P, device=v.device)) & 1).to(v.dtype)     # [2^P, P]
    b = 2 * bits - 1 if signed else bits
    out = torch.zeros((1 << P,) + tuple(v.shape[1:]), dtype=v.dtype, device=v.device)
    for j in range(P):                      # the same summation order as gen.quant
        out = out + (b[:, j].reshape(-1, *([1] * (v.dim() - 1))) * v[j])
    return out, bits


def _nearest(x, levels):
    """Index into sorted ``levels`` of the nearest one, ties to the lower (x > midpoint goes up)."""
    mids = (levels[:-1] + levels[1:]) / 2
    return torch.searchsorted(mids.contiguous(), x.contiguous(), right=False)


def lq_weights(W, v):
    """LQ-Nets weights: per output channel nearest level of basis ``v`` ``[P, C]``.
    Returns ``(fake-quant W, codes)``."""
    lv, _ = lq_levels(v.detach(), signed=True)                # [2^P, C]
    Wc = W.detach().reshape(W.shape[0], -1)
    out = torch.empty_like(Wc)
    codes = torch.empty(Wc.shape, dtype=torch.long, device=W.device)
    for c in range(W.shape[0]):
        order = torch.argsort(lv[:, c], stable=True)
        srt = lv[order, c]
        idx = _nearest(Wc[c], srt)
        out[c] = srt[idx]
        codes[c] = order[idx]
    return ste(W, out.reshape(W.shape)), codes.reshape(W.shape)


def lq_acts(x, v):
    """LQ-Nets activations (after ``relu``): nearest level of per-layer basis ``v`` ``[P]``,
    input clipped at the top level; gradient straight through below the top level.
    Returns ``(fake-quant x, codes)``."""
    lv, _ = lq_levels(v.detach(), signed=False)
    order = torch.argsort(lv, stable=True)
    srt = lv[order]
    idx = _nearest(x.detach(), srt)
    y = srt[idx]
    top = srt[-1]
    xin = torch.where(x.detach() <= top, x, x.detach())      # no gradient above the top level
    return ste(xin, y), order[idx]


def lq_qem_update(v, x, codes, signed: bool, momentum: float = 0.9):
    """One QEM step: the least-squares basis for the current codes, then a moving average.

    ``v``: ``[P]`` (activations) or ``[P, C]`` (weights, ``x`` ``[C, ...]``, ``codes`` the
    same shape). Returns the new basis (no gradient)."""
    with torch.no_grad():
        P = v.shape[0]
        if v.dim() == 1:
            B = ((codes.reshape(-1, 1) >> torch.arange(P, device=v.device)) & 1).to(v.dtype)
            B = 2 * B - 1 if signed else B
            sol = torch.linalg.lstsq(B, x.reshape(-1, 1).to(v.dtype)).solution.reshape(P)
            new = sol
        else:
            new = torch.empty_like(v)
            for c in range(v.shape[1]):
                B = ((codes[c].reshape(-1, 1) >> torch.arange(P, device=v.device)) & 1).to(v.dtype)
                B = 2 * B - 1 if signed else B
                new[:, c] = torch.linalg.lstsq(B, x[c].reshape(-1, 1).to(v.dtype)).solution.reshape(P)
        new = torch.nan_to_num(new, nan=0.0)
        # keep a usable basis: positive, sorted by magnitude order of the bits (as initialised)
        new = new.abs().clamp_min(1e-8)
        return momentum * v + (1 - momentum) * new


def lq_init(P: int, scale: float, channels: int | None = None, dtype=None):
    """The LQ-Nets initial basis: powers of two times ``scale`` (uniform levels)."""
    dtype = dtype or torch.get_default_dtype()
    v = scale * (2.0 ** torch.arange(P, dtype=dtype))
    return v if channels is None else v[:, None].repeat(1, channels)


# --------------------------------------------------------------------------- activations

def nonlin(name: str, x):
    if name == "clip01":
        return torch.clamp(x, 0.0, 1.0)
    if name == "cabs":
        return torch.clamp(x.abs(), max=1.0)
    if name == "relu":
        return torch.relu(x)
    if name == "none":
        return x
    raise ValueError(f"unknown nonlin {name!r}")


def dorefa_acts(x, k: int):
    return ste(x, q_k(x, k))


def batch_tanh_range(x):
    """The seed's per-batch normaliser: ``max|tanh(x)|`` over the whole tensor (no gradient)."""
    return torch.tanh(x.detach()).abs().max()


def tanh_acts(x, k: int, r):
    """``q_k(clip01((tanh(x) / r + 1) / 2))``, rounding straight-through (``r > 0``)."""
    u = torch.clamp((torch.tanh(x) / r + 1.0) * 0.5, 0.0, 1.0)
    return ste(u, q_k(u, k))


def uint_acts(x, k: int, scale):
    """``clip(rnd(x / scale), 0, 2^k - 1) * scale`` (after ``nonlin``), rounding straight-through
    inside the range (no gradient above the top level)."""
    top = scale * float((1 << k) - 1)
    xin = torch.where(x.detach() <= top, x, x.detach())
    return ste(xin, torch.clamp(_round(x.detach() / scale), 0, (1 << k) - 1) * scale)


def tanh_range_update(running, batch_range, momentum: float = 0.9):
    """Moving average of the batch ranges (the value frozen for eval and export): the tanh
    quantizer's ``range`` and a ``uint`` quantizer's ``scale``."""
    with torch.no_grad():
        return momentum * running + (1 - momentum) * batch_range


# --------------------------------------------------------------------------- gradients

class _QuantGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, k, generator):
        ctx.k, ctx.gen = k, generator
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return grad_quantizer(g, ctx.k, ctx.gen), None, None


def grad_quantizer(g, k: int, generator=None):
    """DoReFa's k-bit gradient quantizer on one gradient tensor (first axis = samples):
    ``2 maxx (q_k(clip(g/(2 maxx) + 1/2 + N, 0, 1)) - 1/2)``, ``maxx`` per sample,
    ``N ~ U(-1/(2n), 1/(2n))``, ``n = 2^k - 1``."""
    n = float((1 << k) - 1)
    dims = tuple(range(1, g.dim()))
    maxx = g.abs().amax(dim=dims, keepdim=True) if dims else g.abs().max()
    safe = torch.where(maxx > 0, maxx, torch.ones_like(maxx))
    x = g / safe * 0.5 + 0.5
    noise = (torch.rand(g.shape, generator=generator, dtype=g.dtype, device=g.device) - 0.5) / n
    x = torch.clamp(x + noise, 0.0, 1.0)
    return (q_k(x, k) - 0.5) * safe * 2


def quantize_grad(x, k: int | None, generator=None):
    """Identity forward; the gradient flowing back through ``x`` is quantized to ``k`` bits
    (``None`` or 32: full precision)."""
    if k is None or k >= 32:
        return x
    return _QuantGrad.apply(x, k, generator)
