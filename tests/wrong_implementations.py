"""A catalogue of realistic wrong implementations, at least three per exercise.

Each is a bug a student (or a maintainer) writes: transposed or averaged backward passes,
the wrong subgradient, weight decay in the wrong place, Adam's bias correction off by one,
a missing eps or clamp, a float32 norm that under- or overflows, half-away instead of
half-even, the zero point added before rounding, a float64 or reciprocal division, the
saturation case missing, int8 arithmetic that wraps, and so on. tests/test_laws.py asserts
that ``nnref.laws.check`` fails every one of them.
"""

from __future__ import annotations

import math

import numpy as np

I32_MIN = -(2**31)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _ce_naive(z, y):
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)  # overflows for large logits
    b = len(y)
    g = p.copy()
    g[np.arange(b), y] -= 1
    return float(-np.log(p[np.arange(b), y]).mean()), g / b


def _ce(z, y, per_mean=True, sum_loss=False, minus_one=True):
    p = _softmax(z)
    b = len(y)
    loss = -np.log(p[np.arange(b), y])
    g = p.copy()
    if minus_one:
        g[np.arange(b), y] -= 1
    return float(loss.sum() if sum_loss else loss.mean()), g / b if per_mean else g


def _sgd(p, g, buf, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, bug=""):
    d = g + weight_decay * p if bug != "decay_after" else g.copy()
    if momentum:
        if buf is None:
            buf = (1 - dampening) * d if bug == "dampen_first" else d.copy()
        else:
            buf = momentum * buf + (1 - dampening) * d
        if bug == "decay_after":
            step = buf + weight_decay * p
        elif nesterov:
            step = momentum * buf if bug == "nesterov" else d + momentum * buf
        else:
            step = buf
    else:
        step, buf = d, None
    return p - lr * step, buf


def _adam(p, g, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, bug=""):
    d = g if bug == "adamw" else g + weight_decay * p
    m = beta1 * m + (1 - beta1) * d
    v = beta2 * v + (1 - beta2) * d * d
    t = step + 1 if bug == "off_by_one" else step
    mh, vh = (m, v) if bug == "no_correction" else (m / (1 - beta1**t), v / (1 - beta2**t))
    denom = np.sqrt(vh + eps) if bug == "eps_inside" else np.sqrt(vh) + eps
    p_new = p - lr * mh / denom
    if bug == "adamw":
        p_new = p_new - lr * weight_decay * p
    return p_new, m, v


class _GlobalCounterAdam:
    """Counts its own calls instead of using the step it is given."""

    def __init__(self):
        self.t = 0

    def __call__(self, p, g, m, v, step, **kw):
        self.t += 1
        return _adam(p, g, m, v, self.t, **kw)


def _global(grads, max_norm, eps=1e-6, bug=""):
    if bug == "float32_sum":
        total = float(np.sqrt(sum(np.sum(g * g) for g in grads))) if grads else 0.0
    else:
        total = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))
    if bug == "per_tensor":
        out = []
        for g in grads:
            n = float(np.sqrt(np.sum(g.astype(np.float64) ** 2)))
            out.append(g * g.dtype.type(min(max_norm / (n + eps), 1.0)))
        return out, total
    denom = total if bug == "no_eps" else total + eps
    coef = max_norm / denom if denom else 1.0
    if bug != "no_clamp":
        coef = min(coef, 1.0)
    return [g * g.dtype.type(coef) for g in grads], total


def _agc(w, g, clipping=0.01, eps=1e-3, bug=""):
    def norms(a):
        if bug == "whole" or (bug == "bias_one_unit" and a.ndim == 1):
            return np.full(a.shape, np.sqrt(np.sum(a * a)))
        if a.ndim == 1:
            return np.abs(a)
        axis = 1 if bug == "rows" else 0
        return np.broadcast_to(np.sqrt(np.sum(a * a, axis=axis, keepdims=True)), a.shape)
    wn = norms(w)
    limit = clipping * (wn if bug == "no_eps" else np.maximum(wn, eps))
    gn = norms(g)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gn > limit, g * limit / np.maximum(gn, 1e-30), g)


def _affine(min_val, max_val, qmin, qmax, bug=""):
    mn = np.asarray(min_val, dtype=np.float64)
    mx = np.asarray(max_val, dtype=np.float64)
    if bug != "no_widen":
        mn, mx = np.minimum(mn, 0.0), np.maximum(mx, 0.0)
    if bug == "float32":
        s64 = (mx.astype(np.float32) - mn.astype(np.float32)) / np.float32(qmax - qmin)
    else:
        s64 = (mx - mn) / (qmax - qmin)
    tiny = np.finfo(np.float32).tiny
    if bug == "eps_floor":
        scale = np.maximum(s64, np.finfo(np.float32).eps).astype(np.float32)
        degenerate = np.zeros(np.shape(s64), bool)
    else:
        degenerate = s64 < tiny
        scale = np.where(degenerate, 1.0, s64).astype(np.float32)
    div = np.where(degenerate, 1.0, s64) if bug == "float64_scale" else scale.astype(np.float64)
    q = mn / div
    r = np.copysign(np.floor(np.abs(q) + 0.5), q) if bug == "half_away" else np.round(q)
    zp = np.where(degenerate, 0, qmin - r)
    return scale, np.clip(zp, qmin, qmax).astype(np.int64)


def _symmetric(min_val, max_val, qmin, qmax, zero_point=0, convention="tflite", bug=""):
    mn = np.minimum(np.asarray(min_val, dtype=np.float64), 0.0)
    mx = np.maximum(np.asarray(max_val, dtype=np.float64), 0.0)
    a = np.maximum(-mn, mx)
    if bug == "ignore_convention":
        s = a / ((qmax - qmin) / 2)
    elif bug == "ignore_zero_point" and convention == "tflite":
        s = a / qmax
    else:
        s = a / (qmax - zero_point) if convention == "tflite" else a / ((qmax - qmin) / 2)
    if bug != "no_tiny":
        s = np.where(s < np.finfo(np.float32).tiny, 1.0, s)
    zp = np.zeros(np.shape(mn), np.int64) if bug == "zero_zp" else np.full(np.shape(mn), zero_point, np.int64)
    return np.asarray(s, dtype=np.float32), zp


def _round_away(v):
    return np.copysign(np.floor(np.abs(v) + 0.5), v)


def _quantize(x, scale, zero_point, qmin, qmax, rounding="half_even", dtype=np.int64, bug=""):
    x32, s32 = np.asarray(x, np.float32), np.asarray(scale, np.float32)
    if bug == "float64":
        v = np.asarray(x, np.float64) / np.asarray(scale, np.float64).astype(np.float64)
        v = np.asarray(x32, np.float64) / np.asarray(s32, np.float64)
    elif bug == "reciprocal":
        v = x32 * (np.float32(1) / s32)
    else:
        v = x32 / s32
    v = v.astype(np.float64)
    if bug == "zp_before":
        v = v + zero_point
    if bug == "floor_half":
        r = np.floor(v + 0.5)
    elif rounding == "half_even" or bug == "always_even":
        r = np.rint(v)
    else:
        r = _round_away(v)
    if bug != "zp_before":
        r = r + zero_point
    out = r if bug == "no_clip" else np.clip(r, qmin, qmax)
    return out.astype(np.int64 if bug == "ignore_dtype" else dtype)


def _dequantize(q, scale, zero_point, bug=""):
    if bug == "wrap":
        return np.float32(scale) * (q - np.asarray(zero_point).astype(q.dtype)).astype(np.float32)
    if bug == "float64":
        return float(scale) * (q.astype(np.int64) - zero_point).astype(np.float64)
    return np.float32(scale) * q.astype(np.float32) - np.float32(zero_point)


def _ste(grad_out, x, scale, zero_point, qmin, qmax, rounding="half_even", bug=""):
    s = np.asarray(scale, np.float32)
    if bug == "real_bounds":
        lo, hi = (qmin - np.asarray(zero_point)) * s, (qmax - np.asarray(zero_point)) * s
        mask = (x >= lo) & (x <= hi)
    elif bug == "identity":
        mask = np.ones(np.shape(x), bool)
    else:
        v = np.asarray(x, np.float32) / s
        pos = (np.rint(v) if rounding == "half_even" else _round_away(v)) + zero_point
        mask = (pos > qmin) & (pos < qmax)
    return np.where(mask, grad_out, 0.0)


def _i64(a):
    return np.asarray(a, dtype=np.int64)


def _srdhm(a, b, bug=""):
    a, b = (np.asarray(a), np.asarray(b)) if bug == "int32" else (_i64(a), _i64(b))
    if bug == "float":
        return np.round(a.astype(np.float64) * b / 2.0**31).astype(np.int64)
    ab = a * b
    if bug == "nudge_sign":
        s = ab + 2**30
        high = np.where(s >= 0, s >> 31, -((-s) >> 31))
    else:
        high = (ab.astype(np.int64) + 2**30) >> 31
    if bug in ("no_saturation", "int32", "nudge_sign"):
        return high if bug != "nudge_sign" else np.where((a == I32_MIN) & (b == I32_MIN), 2**31 - 1, high)
    return np.where((a == I32_MIN) & (b == I32_MIN), 2**31 - 1, high)


def _rdbpot(x, exponent, bug=""):
    x, e = _i64(x), _i64(exponent)
    if bug == "floor":
        return x >> e
    if bug == "toward_plus":
        return (x + ((np.int64(1) << e) >> 1)) >> e
    return np.round(x / 2.0**e).astype(np.int64)


def _mbqm_single(x, m0, shift, bug=""):
    x, m0, shift = _i64(x), _i64(m0), _i64(shift)
    t = 31 - shift
    if bug == "float":
        return np.round(x * m0.astype(np.float64) * 2.0 ** (shift - 31)).astype(np.int64)
    if bug == "truncate":
        return (x * m0) >> t
    if bug == "term":
        return (x * m0 + (np.int64(1) << t)) >> t
    return _mbqm_double(x, m0, shift)


def _srdhm_ok(a, b):
    ab = a * b
    return np.where((a == I32_MIN) & (b == I32_MIN), 2**31 - 1, (ab + 2**30) >> 31)


def _rdbpot_ok(x, e):
    mask = (np.int64(1) << e) - 1
    return (x >> e) + ((x & mask) > ((mask >> 1) + (x < 0)))


def _mbqm_double(x, m0, shift, bug=""):
    x, m0, shift = _i64(x), _i64(m0), _i64(shift)
    if bug == "single":
        t = 31 - shift
        return (x * m0 + (np.int64(1) << (t - 1))) >> t
    left = np.zeros_like(shift) if bug == "no_left" else np.maximum(shift, 0)
    high = _srdhm_ok(x << left, m0)
    right = np.maximum(-shift, 0)
    if bug == "toward_plus":
        return (high + ((np.int64(1) << right) >> 1)) >> right
    return _rdbpot_ok(high, right)


def _matmul(a, b, a_zero_point=0, b_zero_point=0, bug=""):
    if bug == "int8":
        return ((a - np.int8(a_zero_point)).astype(np.int64) @ (b - np.asarray(b_zero_point).astype(np.int8))).astype(np.int32)
    if bug == "no_zero_points":
        return (a.astype(np.int64) @ b.astype(np.int64)).astype(np.int32)
    if bug == "int64":
        return (a.astype(np.int64) - a_zero_point) @ (b.astype(np.int64) - b_zero_point)
    return ((a.astype(np.int64) - np.asarray(b_zero_point).ravel()[0]) @ (b.astype(np.int64) - a_zero_point)).astype(np.int32)


def _requant(acc, m0, shift, out_zero_point, act_min=-128, act_max=127, rounding="single", bug=""):
    f = _mbqm_double if (rounding == "double" and bug != "ignore_rounding") else (
        lambda x, m, s: (_i64(x) * _i64(m) + (np.int64(1) << (30 - _i64(s)))) >> (31 - _i64(s)))
    if bug == "zp_before":
        y = f(_i64(acc) + out_zero_point, m0, shift)
    else:
        y = f(acc, m0, shift) + out_zero_point
    if bug == "wrap":
        return y.astype(np.int8)
    lo, hi = (-128, 127) if bug == "full_range" else (act_min, act_max)
    return np.clip(y, lo, hi).astype(np.int8)


def _linear(x_q, w_q, bias_q, x_zero_point, w_zero_point, m0, shift, out_zero_point, act_min=-128, act_max=127,
            rounding="single", bug=""):
    zw = 0 if bug == "ignore_w_zp" else w_zero_point
    acc = (x_q.astype(np.int64) - x_zero_point) @ (w_q.astype(np.int64) - zw)
    if bug not in ("no_bias", "bias_after"):
        acc = acc + bias_q
    y = _requant(acc.astype(np.int32), m0, shift, out_zero_point, act_min, act_max, rounding)
    if bug == "bias_after":
        y = np.clip(y.astype(np.int64) + bias_q, act_min, act_max).astype(np.int8)
    return y


def _multiplier(a_scale, b_scale, y_scale, bug=""):
    a, b, y = np.float32(a_scale), np.asarray(b_scale, np.float32), np.float32(y_scale)
    if bug == "b_over_y":
        return a * (b / y)
    if bug == "float64":
        return (np.float64(a) * b.astype(np.float64) / np.float64(y)).astype(np.float32)
    return a / y * b


def _rqf(acc, multiplier, out_zero_point, act_min=-128, act_max=127, dtype=np.int8, bug=""):
    if bug == "float64":
        v = acc.astype(np.float64) * float(multiplier)
    else:
        v = acc.astype(np.float32) * np.float32(multiplier)
    lo = -128 if bug == "ignore_act_min" else act_min
    v = np.clip(v, lo - out_zero_point, act_max - out_zero_point)
    if bug == "zp_before":
        return np.rint(v + out_zero_point).astype(dtype)
    r = _round_away(v) if bug == "half_away" else np.rint(v)
    return (r + out_zero_point).astype(dtype)


def _qmult(real, bug=""):
    m = np.asarray(real, dtype=np.float32 if bug == "float32" else np.float64)
    q, e = np.frexp(m)
    v = q.astype(np.float64) * 2.0**31
    m0 = (np.rint(v) if bug == "half_even" else np.floor(v + 0.5)).astype(np.int64)
    e = e.astype(np.int64)
    if bug != "no_carry":
        carry = m0 == 2**31
        m0, e = np.where(carry, 2**30, m0), np.where(carry, e + 1, e)
    if bug != "no_flush":
        tiny = e < -31
        m0, e = np.where(tiny, 0, m0), np.where(tiny, 0, e)
    if m.ndim == 0:
        return int(m0), int(e)
    return m0, e


def _qbias(b, input_scale, weight_scale, bug=""):
    if bug == "float64_division":
        v = np.asarray(b, np.float64) / (np.float64(input_scale) * np.asarray(weight_scale, np.float64))
    elif bug == "float32_division":
        v = (np.asarray(b, np.float32) / (np.float32(input_scale) * np.asarray(weight_scale, np.float32))).astype(np.float64)
    else:
        s_b = np.float32(input_scale) * np.asarray(weight_scale, np.float32)
        v = (np.asarray(b, np.float32) * (1.0 / s_b.astype(np.float64)).astype(np.float32)).astype(np.float64)
    r = np.rint(v) if bug == "half_even" else _round_away(v)
    return r.astype(np.int32)


def _inplace_relu(x, grad_out):
    grad_out[x <= 0] = 0
    return grad_out


def _inplace_clip(grads, min_value, max_value):
    return [np.clip(g, min_value, max_value, out=g) for g in grads]


# ---------------------------------------------------------------- tutorials 08-11

def _sig(v):
    return 1.0 / (1.0 + np.exp(-np.asarray(v, np.float64)))


def _lsq(v, s, qn, qp, bug=""):
    r = v / s
    inside = (r >= -qn) & (r <= qp) if bug == "inclusive" else (r > -qn) & (r < qp)
    rounded = np.rint(np.clip(r, -qn, qp)) if bug == "half_even" else _round_away(np.clip(r, -qn, qp))
    inner = r - rounded if bug == "sign" else rounded - r
    outer = 0.0 if bug == "no_outside" else np.where(r <= -qn, -qn, qp)
    return inside.astype(float), np.where(inside, inner, outer)


def _pact(grad_out, x, alpha, bug=""):
    clipped = x > alpha if bug == "strict" else x >= alpha
    lower = np.ones(x.shape, bool) if bug == "negatives" else x >= 0
    dx = np.where(lower & ~clipped, grad_out, 0.0)
    da = float(np.sum(clipped)) if bug == "count" else float(np.sum(grad_out[clipped]))
    return dx, da


def _bf16(bits, bug=""):
    b = bits.astype(np.uint64)
    if bug == "truncate":
        out = b & 0xFFFF0000
    elif bug == "half_up":
        out = (b + 0x8000) & 0xFFFF0000
    elif bug == "no_lsb":
        out = (b + 0x7FFF) & 0xFFFF0000
    else:  # the rounding alone: NaN payloads in the low bits round to infinity
        out = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
    return (out & 0xFFFFFFFF).astype(np.uint32)


def _sround(x, step, u, bug=""):
    q = x / step
    lo = np.trunc(q) if bug == "trunc" else np.floor(q)
    if bug == "nearest":
        return np.round(q) * step
    up = u > q - lo if bug == "inverted" else (u <= q - lo if bug == "inclusive" else u < q - lo)
    return (lo + up) * step


def _lscale(scale, growth_tracker, found_inf, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000, bug=""):
    if found_inf:
        return (scale / growth_factor if bug == "backoff" else scale * backoff_factor), (growth_tracker if bug == "keep"
                                                                                           else 0)
    growth_tracker += 1
    if (growth_tracker > growth_interval) if bug == "late" else (growth_tracker == growth_interval):
        grown = scale * growth_factor
        return (grown if bug == "to_inf" or np.isfinite(grown) else scale), 0
    return scale, growth_tracker


def _mask(w, n_prune, bug=""):
    key = w.ravel() if bug == "signed" else np.abs(w).ravel()
    if bug == "threshold":
        if n_prune == 0:
            return np.ones(w.shape, bool)
        t = np.sort(key)[n_prune - 1]
        return (np.abs(w) > t).reshape(w.shape)
    order = np.argsort(-key, kind="stable")[::-1] if bug == "last_first" else np.argsort(key, kind="stable")
    keep = np.ones(w.size, bool)
    keep[order[:n_prune]] = False
    return keep.reshape(w.shape)


def _cgrads(dW, idx, mask, k, bug=""):
    if bug == "no_mask":
        return np.bincount(idx.ravel(), weights=dW.ravel(), minlength=k)
    if bug == "no_minlength":
        return np.bincount(idx[mask], weights=dW[mask])
    sums = np.bincount(idx[mask], weights=dW[mask], minlength=k)
    return sums / np.maximum(np.bincount(idx[mask], minlength=k), 1)


def _bweights(W, bug=""):
    B = np.sign(W).astype(np.int8) if bug == "sign0" else np.where(W >= 0, 1, -1).astype(np.int8)
    if bug == "rows":
        return B, np.mean(np.abs(W), axis=1)
    return B, (np.max(np.abs(W), axis=0) if bug == "max" else np.mean(np.abs(W), axis=0))


def _bgrad(W, g, B, alpha, bug=""):
    n = W.shape[1] if bug == "out" else W.shape[0]
    ste = 1.0 if bug == "no_clip" else (np.abs(W) <= 1)
    second = 0.0 if bug == "no_alpha" else B * (np.sum(g * B, axis=0) / n)
    return g * alpha * ste + second


def _xnor(a_bits, b_bits, n, bug=""):
    if bug == "xnor_padding":
        return 2 * int(np.unpackbits(~(a_bits ^ b_bits)).sum()) - n
    diff = int(np.unpackbits(a_bits ^ b_bits).sum())
    return n - diff if bug == "no_two" else n - 2 * diff



def _b(fn, **kw):
    return lambda *a, **k: fn(*a, **k, **kw)


WRONG = {
    "linear_backward": {
        "dW transposed (g^T x)": lambda x, W, g: (g @ W.T, (g.T @ x).T.T if g.shape[1] != x.shape[1] else g.T @ x, g.sum(0)),
        "db averaged over the batch": lambda x, W, g: (g @ W.T, x.T @ g, g.mean(0)),
        "dW averaged over the batch": lambda x, W, g: (g @ W.T, x.T @ g / len(x), g.sum(0)),
        "dx with W instead of W^T (square layers)": lambda x, W, g: (g @ W if W.shape[0] == W.shape[1] else g @ W.T,
                                                                     x.T @ g, g.sum(0)),
        "db summed over the wrong axis": lambda x, W, g: (g @ W.T, x.T @ g, g.sum(1)[: g.shape[1]] if len(g) >= g.shape[1] else g.sum(0) * 2),
    },
    "relu_backward": {
        "subgradient 1 at x = 0": lambda x, g: g * (x >= 0),
        "ReLU of the gradient": lambda x, g: np.maximum(g, 0),
        "masks in place": _inplace_relu,
    },
    "leaky_relu_forward": {
        "max(x, alpha x)": lambda x, a: np.maximum(x, a * x),
        "slope hard-coded 0.01": lambda x, a: np.where(x > 0, x, 0.01 * x),
        "alpha |x|": lambda x, a: np.where(x > 0, x, a * np.abs(x)),
    },
    "leaky_relu_backward": {
        "slope 1 at x = 0": lambda x, g, a: np.where(x >= 0, g, a * g),
        "mask from max(x, alpha x) == x": lambda x, g, a: np.where(np.maximum(x, a * x) == x, g, a * g),
        "forgets g on the negative side": lambda x, g, a: np.where(x > 0, g, a),
    },
    "tanh_backward": {
        "g (1 - y)": lambda y, g: g * (1 - y),
        "tanh applied to the output again": lambda y, g: g * (1 - np.tanh(y) ** 2),
        "forgets g": lambda y, g: 1 - y * y,
    },
    "sigmoid_backward": {
        "g y": lambda y, g: g * y,
        "sigmoid applied to the output again": lambda y, g: g * (1 / (1 + np.exp(-y))) * (1 - 1 / (1 + np.exp(-y))),
        "forgets g": lambda y, g: y * (1 - y),
    },
    "cross_entropy_loss_and_grad": {
        "no max subtraction (overflows)": _ce_naive,
        "gradient not divided by B": _b(_ce, per_mean=False),
        "summed loss": _b(_ce, sum_loss=True),
        "forgets the -1 at the label": _b(_ce, minus_one=False),
    },
    "sgd_update": {
        "weight decay after the momentum buffer": _b(_sgd, bug="decay_after"),
        "dampening on the first step": _b(_sgd, bug="dampen_first"),
        "Nesterov step without g": _b(_sgd, bug="nesterov"),
    },
    "adam_update": {
        "bias correction one step off": _b(_adam, bug="off_by_one"),
        "eps inside the square root": _b(_adam, bug="eps_inside"),
        "no bias correction": _b(_adam, bug="no_correction"),
        "decoupled weight decay (AdamW)": _b(_adam, bug="adamw"),
        "counts its own calls, not the parameter's step": _GlobalCounterAdam(),
    },
    "clip_grads_by_value": {
        "symmetric [-max, max]": lambda grads, lo, hi: [np.clip(g, -hi, hi) for g in grads],
        "clips in place": _inplace_clip,
        "float64 results": lambda grads, lo, hi: [np.clip(g.astype(np.float64), lo, hi) for g in grads],
        "no upper bound": lambda grads, lo, hi: [np.maximum(g, g.dtype.type(lo)) for g in grads],
    },
    "clip_grad_by_norm": {
        "always rescales to max_norm": lambda g, c: g * c / np.sqrt(np.sum(g * g)),
        "forgets * max_norm": lambda g, c: g / max(float(np.sqrt(np.sum(g * g))), c),
        "squared norm": lambda g, c: g * c / max(float(np.sum(g * g)), c),
    },
    "clip_grads_by_global_norm": {
        "no eps": _b(_global, bug="no_eps"),
        "no clamp at 1": _b(_global, bug="no_clamp"),
        "per tensor instead of global": _b(_global, bug="per_tensor"),
        "float32 sum of squares (under/overflows)": _b(_global, bug="float32_sum"),
    },
    "adaptive_clip_grad": {
        "rows instead of columns": _b(_agc, bug="rows"),
        "one norm for the whole tensor": _b(_agc, bug="whole"),
        "no eps (zero weights freeze)": _b(_agc, bug="no_eps"),
        "a bias as one unit": _b(_agc, bug="bias_one_unit"),
    },
    "affine_qparams": {
        "zero point rounded half away from zero": _b(_affine, bug="half_away"),
        "zero point from the float64 scale": _b(_affine, bug="float64_scale"),
        "range not widened to contain 0": _b(_affine, bug="no_widen"),
        "scale floored at float32 eps (PyTorch), not 1": _b(_affine, bug="eps_floor"),
        "scale computed in float32": _b(_affine, bug="float32"),
    },
    "symmetric_qparams": {
        "PyTorch's 127.5 for both conventions": _b(_symmetric, bug="ignore_convention"),
        "divides by qmax, ignoring the zero point": _b(_symmetric, bug="ignore_zero_point"),
        "zero point always 0": _b(_symmetric, bug="zero_zp"),
        "zero scale for an all-zero range": _b(_symmetric, bug="no_tiny"),
    },
    "quantize_affine": {
        "float64 division": _b(_quantize, bug="float64"),
        "multiplies by 1 / scale": _b(_quantize, bug="reciprocal"),
        "zero point added before rounding": _b(_quantize, bug="zp_before"),
        "always half to even": _b(_quantize, bug="always_even"),
        "floor(v + 0.5)": _b(_quantize, bug="floor_half"),
        "no clamp": _b(_quantize, bug="no_clip"),
        "ignores dtype": _b(_quantize, bug="ignore_dtype"),
    },
    "dequantize_affine": {
        "q - zero_point in int8 (wraps)": _b(_dequantize, bug="wrap"),
        "float64 result": _b(_dequantize, bug="float64"),
        "scale q - zero_point": _b(_dequantize, bug="order"),
    },
    "fake_quantize_affine_backward": {
        "mask from the real bounds": _b(_ste, bug="real_bounds"),
        "passes everything": _b(_ste, bug="identity"),
        "strict inequalities": _b(_ste, bug="strict"),
    },
    "quantize_bias": {
        "float64 division": _b(_qbias, bug="float64_division"),
        "float32 division instead of the reciprocal": _b(_qbias, bug="float32_division"),
        "half to even": _b(_qbias, bug="half_even"),
    },
    "quantize_multiplier": {
        "half to even": _b(_qmult, bug="half_even"),
        "no carry at 2^31": _b(_qmult, bug="no_carry"),
        "tiny multipliers not flushed": _b(_qmult, bug="no_flush"),
        "float32 arithmetic": _b(_qmult, bug="float32"),
    },
    "srdhm": {
        "no saturation": _b(_srdhm, bug="no_saturation"),
        "float64 product, rounded half to even": _b(_srdhm, bug="float"),
        "int32 product (wraps)": _b(_srdhm, bug="int32"),
        "positive nudge, truncating division": _b(_srdhm, bug="nudge_sign"),
    },
    "rdbpot": {
        "plain shift (floor)": _b(_rdbpot, bug="floor"),
        "ties toward +infinity": _b(_rdbpot, bug="toward_plus"),
        "float division, half to even": _b(_rdbpot, bug="float"),
    },
    "mbqm_single": {
        "two roundings": _b(_mbqm_single, bug="double"),
        "rounding term 2^t": _b(_mbqm_single, bug="term"),
        "truncating shift": _b(_mbqm_single, bug="truncate"),
        "float64 arithmetic": _b(_mbqm_single, bug="float"),
    },
    "mbqm_double": {
        "one rounding": _b(_mbqm_double, bug="single"),
        "RDBPOT ties toward +infinity": _b(_mbqm_double, bug="toward_plus"),
        "no left shift for positive shifts": _b(_mbqm_double, bug="no_left"),
    },
    "matmul_centred": {
        "centred in int8 (wraps)": _b(_matmul, bug="int8"),
        "zero points forgotten": _b(_matmul, bug="no_zero_points"),
        "int64 result": _b(_matmul, bug="int64"),
        "zero points swapped": _b(_matmul, bug="swapped"),
    },
    "requantize_fixed_point": {
        "zero point before the multiplier": _b(_requant, bug="zp_before"),
        "no clamp (int8 wraps)": _b(_requant, bug="wrap"),
        "ignores rounding": _b(_requant, bug="ignore_rounding"),
        "clamps to the full int8 range": _b(_requant, bug="full_range"),
    },
    "linear_int8": {
        "bias forgotten": _b(_linear, bug="no_bias"),
        "bias added after requantization": _b(_linear, bug="bias_after"),
        "weight zero point ignored": _b(_linear, bug="ignore_w_zp"),
    },
    "qlinear_multiplier": {
        "a_scale * (b_scale / y_scale)": _b(_multiplier, bug="b_over_y"),
        "float64, then float32": _b(_multiplier, bug="float64"),
        "a_scale / y_scale * b_scale": _b(_multiplier, bug="a_over_y"),
    },
    "requantize_float": {
        "zero point before rounding": _b(_rqf, bug="zp_before"),
        "half away from zero": _b(_rqf, bug="half_away"),
        "float64 product": _b(_rqf, bug="float64"),
        "ignores act_min": _b(_rqf, bug="ignore_act_min"),
    },
    "rectified_sigmoid": {
        "plain sigmoid, no stretch": lambda V, zeta=1.1, gamma=-0.1: _sig(V),
        "stretched but not clipped": lambda V, zeta=1.1, gamma=-0.1: _sig(V) * (zeta - gamma) + gamma,
        "zeta and gamma swapped": lambda V, zeta=1.1, gamma=-0.1: np.clip(_sig(V) * (gamma - zeta) + zeta, 0, 1),
        "stretch hard-coded (1.1, -0.1)": lambda V, zeta=1.1, gamma=-0.1: np.clip(_sig(V) * 1.2 - 0.1, 0, 1),
    },
    "adaround_regularizer": {
        "mean instead of sum": lambda h, beta: float(np.mean(1 - np.abs(2 * h - 1) ** beta)),
        "forgets the 1 -": lambda h, beta: float(np.sum(np.abs(2 * h - 1) ** beta)),
        "|h - 1/2|, not |2h - 1|": lambda h, beta: float(np.sum(1 - np.abs(h - 0.5) ** beta)),
        "beta taken as 2": lambda h, beta: float(np.sum(1 - (2 * h - 1) ** 2)),
    },
    "equalization_scales": {
        "inverted: r2 / sqrt(r1 r2)": lambda r1, r2: np.where((r1 > 0) & (r2 > 0), r2 / np.sqrt(np.maximum(r1 * r2, 1e-300)), 1.0),
        "no square root: r1 / r2": lambda r1, r2: np.where((r1 > 0) & (r2 > 0), r1 / np.where(r2 > 0, r2, 1), 1.0),
        "dead channels not kept at 1": lambda r1, r2: np.sqrt(r1 * r2) / r2,
        "sqrt(r1 r2), not divided": lambda r1, r2: np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 * r2), 1.0),
    },
    "lsq_grad": {
        "ties half to even": _b(_lsq, bug="half_even"),
        "ends of the grid counted inside": _b(_lsq, bug="inclusive"),
        "zero step gradient outside": _b(_lsq, bug="no_outside"),
        "v/s - round(v/s) (sign flipped)": _b(_lsq, bug="sign"),
    },
    "pact_backward": {
        "clipped only where x > alpha": _b(_pact, bug="strict"),
        "passes negative inputs": _b(_pact, bug="negatives"),
        "counts the clipped entries, not their gradients": _b(_pact, bug="count"),
    },
    "bfloat16_bits": {
        "truncation": _b(_bf16, bug="truncate"),
        "ties away (+0x8000)": _b(_bf16, bug="half_up"),
        "ties always down (+0x7FFF, no lsb)": _b(_bf16, bug="no_lsb"),
        "NaN not quieted (becomes infinity)": _b(_bf16, bug="nan"),
    },
    "stochastic_round_plain": {
        "round to nearest (ignores u)": _b(_sround, bug="nearest"),
        "up when u > frac (inverted)": _b(_sround, bug="inverted"),
        "up when u <= frac": _b(_sround, bug="inclusive"),
        "trunc instead of floor": _b(_sround, bug="trunc"),
    },
    "loss_scale_update": {
        "grows one step late": _b(_lscale, bug="late"),
        "count not reset on an inf step": _b(_lscale, bug="keep"),
        "grows to infinity": _b(_lscale, bug="to_inf"),
        "backs off by 1 / growth_factor": _b(_lscale, bug="backoff"),
    },
    "magnitude_mask_plain": {
        "|w| > threshold (prunes every tie)": _b(_mask, bug="threshold"),
        "sorts w, not |w|": _b(_mask, bug="signed"),
        "ties: the later position first": _b(_mask, bug="last_first"),
    },
    "centroid_grads": {
        "pruned weights counted": _b(_cgrads, bug="no_mask"),
        "no entry for empty top clusters": _b(_cgrads, bug="no_minlength"),
        "mean instead of sum": _b(_cgrads, bug="mean"),
    },
    "binary_weights": {
        "np.sign (0 -> 0)": _b(_bweights, bug="sign0"),
        "alpha per row": _b(_bweights, bug="rows"),
        "alpha = max |W|": _b(_bweights, bug="max"),
    },
    "binary_weight_grad": {
        "no clip at |W| <= 1": _b(_bgrad, bug="no_clip"),
        "forgets the term through alpha": _b(_bgrad, bug="no_alpha"),
        "divides by the outputs": _b(_bgrad, bug="out"),
    },
    "xnor_dot": {
        "2 popcount(XNOR) - n over the padded bytes": _b(_xnor, bug="xnor_padding"),
        "n - popcount(XOR) (no factor 2)": _b(_xnor, bug="no_two"),
        "popcount(XOR) - n": lambda a, b, n: int(np.unpackbits(a ^ b).sum()) - n,
    },
}
