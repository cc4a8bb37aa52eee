"""Laws of the maps between reals and integers: scale and zero point (affine and
symmetric), quantize (both roundings, float32 division), dequantize, and the
straight-through backward of fake quantization.

Oracles use Python's own arithmetic: ``round()`` is half to even and exact, and every
float32 quotient is computed as numpy float32 by float32, the engines' operation.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from nnref.laws.compare import as_array, expect_equal, expect_pair, expect_true
from nnref.laws.core import Law
from nnref.laws.strategies import arrays, floats
from nnref.laws.training import by_hand, unchanged_law, worked

__all__ = ["affine_laws", "symmetric_laws", "quantize_laws", "dequantize_laws", "ste_laws", "GRIDS"]

F32_TINY = float(np.finfo(np.float32).tiny)
GRIDS = [(-128, 127), (-127, 127), (0, 255), (1, 255), (-8, 7), (-7, 7), (0, 15), (-2, 1), (-1, 1), (0, 3),
         (-32768, 32767)]
_grids = st.sampled_from(GRIDS)


def _round_away(v: float) -> float:
    return math.copysign(math.floor(abs(v) + 0.5), v)


# ---------------------------------------------------------------- scale and zero point

def affine_oracle(mn: float, mx: float, qmin: int, qmax: int) -> tuple[float, int]:
    """The contract's affine parameters for one channel, in Python floats."""
    mn, mx = min(mn, 0.0), max(mx, 0.0)
    s64 = (mx - mn) / (qmax - qmin)
    if s64 < F32_TINY:
        return 1.0, min(max(0, qmin), qmax)
    s = float(np.float32(s64))
    return s, min(max(qmin - round(mn / s), qmin), qmax)


@st.composite
def _range(draw, qmin: int, qmax: int):
    kind = draw(st.integers(0, 5))
    if kind == 0:  # mn / scale a tie in float64 but not with the float32 scale (or the reverse)
        s32 = float(np.float32(draw(floats(1e-4, 10.0))))
        s64 = s32 * (1 + draw(st.sampled_from([0.0, 1e-8, -1e-8, 2.5e-8, -2.5e-8])))  # float32(s64) == s32
        k = draw(st.integers(0, qmax - qmin - 1))
        mn = -(k + 0.5) * draw(st.sampled_from([s32, s64]))
        return mn, mn + s64 * (qmax - qmin)
    if kind == 1:
        return draw(st.sampled_from([(0.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (2.0, 3.0), (-3.0, -2.0),
                                     (-1e-40, 1e-40), (-5e-324, 0.0)]))
    a, b = draw(floats(-100.0, 100.0)), draw(floats(-100.0, 100.0))
    return min(a, b), max(a, b)


@st.composite
def _qparams_cases(draw):
    qmin, qmax = draw(_grids)
    if draw(st.booleans()):
        mn, mx = draw(_range(qmin, qmax))
        return {"min_val": mn, "max_val": mx, "qmin": qmin, "qmax": qmax}
    pairs = draw(st.lists(_range(qmin, qmax), min_size=1, max_size=4))
    return {"min_val": np.array([p[0] for p in pairs]), "max_val": np.array([p[1] for p in pairs]),
            "qmin": qmin, "qmax": qmax}


def _check_params(got, want_s, want_z, shape, what):
    scale, zp = expect_pair(got, 2, what)
    scale, zp = as_array(scale, "scale"), as_array(zp, "zero_point")
    expect_true(np.all(np.asarray(scale, dtype=np.float64) == np.asarray(scale, dtype=np.float32)),
                "scale: expected float32 values (the stored scale is float32)", want_s, scale)
    expect_equal(scale.astype(np.float64), np.asarray(want_s, dtype=np.float64).reshape(shape), "scale", dtype=False)
    expect_true(zp.dtype.kind in "iu" or np.all(zp == np.round(zp)), "zero_point: expected integers", want_z, zp)
    expect_equal(zp.astype(np.int64), np.asarray(want_z, dtype=np.int64).reshape(shape), "zero_point", dtype=False)


def _verify_affine(fn, case):
    mn, mx, qmin, qmax = case["min_val"], case["max_val"], case["qmin"], case["qmax"]
    pairs = [affine_oracle(a, b, qmin, qmax) for a, b in zip(np.ravel(mn), np.ravel(mx))]
    _check_params(fn(mn, mx, qmin, qmax), [p[0] for p in pairs], [p[1] for p in pairs], np.shape(mn),
                  f"affine_qparams(min_val, max_val, qmin={qmin}, qmax={qmax})")


def _hand_params(name, case, call, scale, zero_point):
    """Scale and zero point worked out by hand (the scale as its float32)."""
    def verify(fn, c):
        _check_params(call(fn, c), np.float32(scale), zero_point, np.shape(c["min_val"]), name)
    return Law(f"worked value: {name}", "a case worked out by hand", st.just(case), verify, 1)


def _affine_call(fn, c):
    return fn(c["min_val"], c["max_val"], c["qmin"], c["qmax"])


def _affine_hand(name, mn, mx, qmin, qmax, scale, zero_point):
    return _hand_params(name, {"min_val": mn, "max_val": mx, "qmin": qmin, "qmax": qmax}, _affine_call,
                        scale, zero_point)


def _affine_hand_laws() -> tuple:
    return (
        # scale 4/255; zero point 0 - round(-1 / (4/255)) = -round(-63.75) = 64
        _affine_hand("[-1, 3] on uint8: scale 4/255, zero point 64", -1.0, 3.0, 0, 255, 4 / 255, 64),
        _affine_hand("[-1, 3] on int8: zero point -128 + 64 = -64", -1.0, 3.0, -128, 127, 4 / 255, -64),
        # [5, 5] widens to [0, 5]; [-3, -3] to [-3, 0]: -128 - round(-255) = 127
        _affine_hand("[5, 5] widens to [0, 5]: scale 5/255, zero point -128", 5.0, 5.0, -128, 127, 5 / 255, -128),
        _affine_hand("[-3, -3] widens to [-3, 0]: zero point 127", -3.0, -3.0, -128, 127, 3 / 255, 127),
        _affine_hand("[0, 0] on uint8: scale 1, zero point 0", 0.0, 0.0, 0, 255, 1.0, 0),
        _affine_hand("[0, 0] on the narrow [1, 255]: zero point clamped to 1", 0.0, 0.0, 1, 255, 1.0, 1),
        # 1e-40 / 255 is below float32's smallest normal 1.18e-38: scale 1
        _affine_hand("a tiny range [0, 1e-40]: scale 1, zero point 0", 0.0, 1e-40, -128, 127, 1.0, 0),
        _affine_hand("just above float32's smallest normal the scale is kept: 2e-38", 0.0, 255 * 2e-38, -128, 127,
                     2e-38, -128),
    )


def affine_laws() -> tuple:
    """The laws and worked values of ``affine``: a tuple of :class:`~nnref.laws.core.Law`."""
    tie = {"min_val": -2.5 / 16, "max_val": 252.5 / 16, "qmin": -128, "qmax": 127}
    return (
        Law("contract", "scale = (mx - mn) / (qmax - qmin) stored as float32; zero point = qmin - "
            "round_half_even(mn / float32 scale), clipped; degenerate ranges get scale 1",
            _qparams_cases(), _verify_affine, 60),
        worked("a tie: mn / scale = -2.5 rounds to -2 (half to even): zero point -126", tie, _verify_affine),
        worked("the zero-width range [0, 0]: scale 1, zero point 0",
               {"min_val": 0.0, "max_val": 0.0, "qmin": -128, "qmax": 127}, _verify_affine),
        worked("a range above 0 is widened to contain 0: [2, 3] on [0, 255]",
               {"min_val": 2.0, "max_val": 3.0, "qmin": 0, "qmax": 255}, _verify_affine),
        *_affine_hand_laws(),
    )


def symmetric_oracle(mn, mx, qmin, qmax, zero_point, convention) -> float:
    """The symmetric scale in float64 then float32, 1.0 below float32's tiny (the oracle)."""
    a = max(-min(mn, 0.0), max(mx, 0.0))
    s64 = a / (qmax - zero_point) if convention == "tflite" else a / ((qmax - qmin) / 2)
    return 1.0 if s64 < F32_TINY else float(np.float32(s64))


@st.composite
def _symmetric_cases(draw):
    case = draw(_qparams_cases())
    qmin, qmax = case["qmin"], case["qmax"]
    if qmin == 1:  # no symmetric unsigned narrow grid in the engines
        case["qmin"] = qmin = 0
    case["zero_point"] = 0 if qmin < 0 else (qmax + 1) // 2
    case["convention"] = draw(st.sampled_from(["tflite", "pytorch"]))
    return case


def _verify_symmetric(fn, case):
    mn, mx, qmin, qmax, z, conv = (case[k] for k in ("min_val", "max_val", "qmin", "qmax", "zero_point", "convention"))
    scales = [symmetric_oracle(a, b, qmin, qmax, z, conv) for a, b in zip(np.ravel(mn), np.ravel(mx))]
    got = fn(mn, mx, qmin, qmax, zero_point=z, convention=conv)
    _check_params(got, scales, [z] * len(scales), np.shape(mn),
                  f"symmetric_qparams(min_val, max_val, {qmin}, {qmax}, zero_point={z}, convention={conv!r})")


def _symmetric_hand(name, mn, mx, qmin, qmax, zero_point, convention, scale):
    case = {"min_val": mn, "max_val": mx, "qmin": qmin, "qmax": qmax, "zero_point": zero_point,
            "convention": convention}
    call = lambda fn, c: fn(c["min_val"], c["max_val"], c["qmin"], c["qmax"], zero_point=c["zero_point"],  # noqa: E731
                            convention=c["convention"])
    return _hand_params(name, case, call, scale, np.full(np.shape(mn), zero_point))


def _symmetric_hand_laws() -> tuple:
    return (
        _symmetric_hand("TFLite weights: 2.54 / 127 = 0.02", -2.54, 1.0, -127, 127, 0, "tflite", 0.02),
        # PyTorch divides by (127 - (-128)) / 2 = 127.5: 1.275 / 127.5 = 0.01
        _symmetric_hand("PyTorch int8: 1.275 / 127.5 = 0.01", -1.275, 0.5, -128, 127, 0, "pytorch", 0.01),
        _symmetric_hand("TFLite int8, the same range: 1.275 / 127", -1.275, 0.5, -128, 127, 0, "tflite", 1.275 / 127),
        _symmetric_hand("uint8 with the midpoint zero point 128: 1.27 / (255 - 128) = 0.01", -1.27, 0.3, 0, 255, 128,
                        "tflite", 0.01),
        _symmetric_hand("[0, 0] on uint8, zero point 128: scale 1", 0.0, 0.0, 0, 255, 128, "tflite", 1.0),
        _symmetric_hand("per channel [-1, 1] and [0, 2.54]: 1/127 and 0.02", np.array([-1.0, 0.0]),
                        np.array([1.0, 2.54]), -127, 127, 0, "tflite", np.array([1 / 127, 0.02])),
    )


def symmetric_laws() -> tuple:
    """The laws and worked values of ``symmetric``: a tuple of :class:`~nnref.laws.core.Law`."""
    tfl = {"min_val": -1.27, "max_val": 0.5, "qmin": -127, "qmax": 127, "zero_point": 0, "convention": "tflite"}
    pyt = {"min_val": -1.0, "max_val": 2.55, "qmin": 0, "qmax": 255, "zero_point": 128, "convention": "pytorch"}
    return (
        Law("contract", "scale = max|range| / (qmax - zero_point) (tflite) or / ((qmax - qmin) / 2) (pytorch), "
            "float32; the zero point is the one given", _symmetric_cases(), _verify_symmetric, 50),
        worked("TFLite int8 weights: max|w| = 1.27 gives scale 0.01", tfl, _verify_symmetric),
        worked("PyTorch uint8: 2.55 / 127.5, zero point 128", pyt, _verify_symmetric),
        *_symmetric_hand_laws(),
    )


# ---------------------------------------------------------------- quantize / dequantize

def quantize_oracle(x, scale, zero_point, qmin, qmax, rounding, dtype):
    """``clamp(round(float32(x) / float32(s)) + zp)`` in the given rounding and dtype (the oracle)."""
    q32 = np.asarray(x, dtype=np.float32) / np.asarray(scale, dtype=np.float32)
    rnd = np.rint if rounding == "half_even" else np.vectorize(_round_away, otypes=[np.float64])
    pos = np.asarray(rnd(q32.astype(np.float64))) + zero_point
    return np.clip(pos, qmin, qmax).astype(dtype)


@st.composite
def _quantize_cases(draw, ties_only: bool = False):
    qmin, qmax = draw(_grids)
    n = draw(st.integers(1, 4))
    per_channel = draw(st.booleans())
    count = n if per_channel else 1
    powers = st.sampled_from([0.5, 0.25, 2.0**-4, 1.0, 2.0])  # exact ties (k + 1/2) * scale
    scales = powers if ties_only else st.one_of(powers, floats(1e-3, 4.0))
    scale = np.array([draw(scales) for _ in range(count)], dtype=np.float32)
    zp = np.array([draw(st.integers(qmin, qmax)) for _ in range(count)], dtype=np.int64)
    rows = draw(st.integers(1, 3))
    kind = draw(st.integers(0, 2)) if not ties_only else 0
    if kind == 0:  # ties and near-ties of x / scale, in float32
        m = draw(arrays((rows, n), -40.0, 40.0)).round()
        nudge = 0.0 if ties_only else draw(st.sampled_from([0.0, 0.0, 1e-7, -1e-7, 6e-8, -6e-8]))
        x = ((m + 0.5) * scale * (1 + nudge)).astype(np.float32)
    else:
        x = draw(arrays((rows, n), -300.0, 300.0, draw(st.sampled_from([np.float32, np.float64]))))
    return {"x": x, "scale": scale if per_channel else scale[0], "zero_point": zp if per_channel else int(zp[0]),
            "qmin": qmin, "qmax": qmax, "rounding": draw(st.sampled_from(["half_even", "half_away"])),
            "dtype": np.int16 if qmin < -128 else draw(st.sampled_from([np.int64, np.int32, np.int16]))}


@st.composite
def _near_tie_cases(draw):
    case = draw(_quantize_cases(ties_only=True))
    n = case["x"].shape[1]
    scale = np.array([draw(floats(1e-3, 4.0)) for _ in range(n)], dtype=np.float32)
    m = draw(arrays(case["x"].shape, -60.0, 60.0)).round()
    case.update(x=((m + 0.5) * scale).astype(np.float32), scale=scale,
                zero_point=np.resize(np.asarray(case["zero_point"]), n))
    return case


def _verify_quantize(fn, case):
    args = [case[k] for k in ("x", "scale", "zero_point", "qmin", "qmax")]
    got = fn(*args, rounding=case["rounding"], dtype=case["dtype"])
    want = quantize_oracle(*args, case["rounding"], case["dtype"])
    expect_equal(got, want, f"clip(round_{case['rounding']}(float32(x) / float32(scale)) + zero_point, "
                 f"qmin, qmax) as {np.dtype(case['dtype']).name}")


def _quantize_call(fn, c):
    return fn(c["x"], c["scale"], c["zero_point"], c["qmin"], c["qmax"], rounding=c["rounding"], dtype=c["dtype"])


def _quantize_hand(name, x, scale, zero_point, qmin, qmax, rounding, want, dtype=np.int64):
    case = {"x": np.asarray(x), "scale": scale, "zero_point": zero_point, "qmin": qmin, "qmax": qmax,
            "rounding": rounding, "dtype": dtype}
    return by_hand(name, case, _quantize_call, np.array(want))


def _quantize_hand_laws() -> tuple:
    x = [1.25, -1.25, 0.75, 100.0, -100.0]
    s = float(np.float32(4 / 255))
    return (
        # / 0.5: 2.5, -2.5, 1.5, 200, -200; + 3 after rounding; clamped to int8
        _quantize_hand("ties with zero point 3, half to even: [5, 1, 5, 127, -128]", x, 0.5, 3, -128, 127,
                       "half_even", [5, 1, 5, 127, -128]),
        _quantize_hand("the same, half away: [6, 0, 5, 127, -128]", x, 0.5, 3, -128, 127, "half_away",
                       [6, 0, 5, 127, -128]),
        # 3 / (4/255) = 191.25 -> 191 + 64 = 255; 1 -> 63.75 -> 128; -1 -> 0; 0 -> 64
        _quantize_hand("[-1, 3] on uint8: [3, 1, -1, 0] -> [255, 128, 0, 64]", [3.0, 1.0, -1.0, 0.0], s, 64, 0, 255,
                       "half_even", [255, 128, 0, 64], np.uint8),
        # float32(0.25) / float32(0.1) is exactly 2.5 in float32 (2.4999999627 exactly)
        _quantize_hand("float32 quotient 0.25 / 0.1 = 2.5, half away: 3", [0.25], 0.1, 0, -128, 127, "half_away", [3]),
        _quantize_hand("float32 quotient 0.25 / 0.1 = 2.5, half to even: 2", [0.25], 0.1, 0, -128, 127, "half_even",
                       [2]),
        _quantize_hand("float32(-9.95) / 0.1 is -99.5 in float32: -100", np.array([-9.95], np.float32), 0.1, 0, -128,
                       127, "half_even", [-100]),
        _quantize_hand("symmetric uint8: [-1.27, 1.27, 0] -> [1, 255, 128]", [-1.27, 1.27, 0.0], 0.01, 128, 0, 255,
                       "half_even", [1, 255, 128]),
        # 1.275 / 0.01 = 127.5 -> 128 either way, clamped
        _quantize_hand("127.5 rounds to 128 and saturates at 127", [1.275, -1.275], 0.01, 0, -128, 127, "half_away",
                       [127, -128]),
        _quantize_hand("huge values saturate (no overflow, no wrap)", [1e300, -1e300, 1e30], 0.5, -3, -128, 127,
                       "half_even", [127, -128, 127], np.int8),
        _quantize_hand("scale 1, half to even: [2.5, -2.5, 0.5, -0.5, 300] -> [2, -2, 0, 0, 127]",
                       [2.5, -2.5, 0.5, -0.5, 300.0], 1.0, 0, -128, 127, "half_even", [2, -2, 0, 0, 127]),
        _quantize_hand("the same, half away: [3, -3, 1, -1, 127]", [2.5, -2.5, 0.5, -0.5, 300.0], 1.0, 0, -128, 127,
                       "half_away", [3, -3, 1, -1, 127]),
        # per channel: columns / 0.5 and / 0.25: -0.75 / 0.5 = -1.5 -> -2, 0.3 / 0.25 = 1.2 -> 1
        _quantize_hand("per channel, scales [0.5, 0.25]", [[1.0, 1.0], [-0.75, 0.3]], np.array([0.5, 0.25], np.float32),
                       np.array([0, 0]), -127, 127, "half_even", [[2, 4], [-2, 1]]),
    )


def quantize_laws() -> tuple:
    """The laws and worked values of ``quantize``: a tuple of :class:`~nnref.laws.core.Law`."""
    near = {"x": np.array([-8.288267], dtype=np.float32), "scale": np.float32(0.09365273), "zero_point": 0,
            "qmin": -128, "qmax": 127, "rounding": "half_even", "dtype": np.int64}
    tie_zp = {"x": np.array([0.25, -0.25, 0.75]), "scale": 0.5, "zero_point": 1, "qmin": -128, "qmax": 127,
              "rounding": "half_even", "dtype": np.int64}
    away = dict(tie_zp, rounding="half_away")
    return (
        Law("contract", "q = clip(round(float32(x) / float32(scale)) + zero_point, qmin, qmax), both "
            "roundings, per tensor or per channel (last axis), in the dtype asked for",
            _quantize_cases(), _verify_quantize, 60),
        Law("ties", "exact ties x / scale = k + 1/2 round half to even or half away from zero, as asked",
            _quantize_cases(ties_only=True), _verify_quantize, 30),
        Law("near ties", "x / scale within a float32 rounding of k + 1/2 rounds as the float32 quotient "
            "does (not as float64, nor as x * (1 / scale))", _near_tie_cases(), _verify_quantize, 40),
        worked("float32 division: -8.288267 / 0.09365273 is -88.5 in float32 (-88.500003 in float64)",
               near, _verify_quantize),
        worked("the zero point is added after rounding: 0.5 + 1 -> 1 (half to even)", tie_zp, _verify_quantize),
        worked("half away from zero: 0.5 -> 1, -0.5 -> -1, 1.5 -> 2", away, _verify_quantize),
        *_quantize_hand_laws(),
        unchanged_law(_quantize_cases(), lambda fn, c: fn(c["x"], c["scale"], c["zero_point"], c["qmin"], c["qmax"],
                                                          rounding=c["rounding"], dtype=c["dtype"])),
    )


@st.composite
def _dequantize_cases(draw):
    qmin, qmax = draw(st.sampled_from([(-128, 127), (0, 255), (-8, 7), (-32768, 32767)]))
    dtype = {-128: np.int8, 0: np.uint8, -8: np.int8, -32768: np.int16}[qmin]
    n = draw(st.integers(1, 5))
    q = np.array(draw(st.lists(st.one_of(st.sampled_from([qmin, qmax]), st.integers(qmin, qmax)),
                               min_size=n, max_size=n)), dtype=dtype)
    return {"q": q, "scale": np.float32(draw(floats(1e-4, 4.0))),
            "zero_point": draw(st.one_of(st.sampled_from([qmin, qmax, 0]), st.integers(qmin, qmax)))}


def _verify_dequantize(fn, case):
    q, s, z = case["q"], case["scale"], case["zero_point"]
    want = np.float32(s) * (q.astype(np.int64) - z).astype(np.float32)
    expect_equal(fn(q, s, z), want, "float32(scale) * float32(q - zero_point), q - zero_point without wrapping")


def dequantize_laws() -> tuple:
    """The laws and worked values of ``dequantize``: a tuple of :class:`~nnref.laws.core.Law`."""
    wrap = {"q": np.array([127, -128], dtype=np.int8), "scale": np.float32(0.5), "zero_point": -128}
    return (
        Law("contract", "x = float32(scale) * float32(q - zero_point), float32, no int8 wrap-around",
            _dequantize_cases(), _verify_dequantize, 30),
        worked("127 - (-128) = 255 does not wrap in int8", wrap, _verify_dequantize),
        # 0.5 (5 - 3) = 1, 0.5 (1 - 3) = -1, 0.5 (127 - 3) = 62, 0.5 (-128 - 3) = -65.5
        by_hand("scale 0.5, zero point 3: [5, 1, 127, -128] -> [1, -1, 62, -65.5]",
                {"q": np.array([5, 1, 127, -128], np.int8), "scale": np.float32(0.5), "zero_point": 3},
                lambda fn, c: fn(c["q"], c["scale"], c["zero_point"]), np.array([1.0, -1.0, 62.0, -65.5], np.float32)),
        by_hand("scale 0.5, zero point -128: [-128, 0, 127] -> [0, 64, 127.5]",
                {"q": np.array([-128, 0, 127], np.int8), "scale": np.float32(0.5), "zero_point": -128},
                lambda fn, c: fn(c["q"], c["scale"], c["zero_point"]), np.array([0.0, 64.0, 127.5], np.float32)),
        unchanged_law(_dequantize_cases(), lambda fn, c: fn(c["q"], c["scale"], c["zero_point"])),
    )


# ---------------------------------------------------------------- straight-through estimator

@st.composite
def _ste_cases(draw):
    case = draw(_quantize_cases())
    qmin, qmax, s, z = case["qmin"], case["qmax"], case["scale"], case["zero_point"]
    edge = draw(st.sampled_from([qmin, qmax]))
    offsets = draw(arrays(case["x"].shape, -0.7, 0.7))
    if draw(st.booleans()):  # next to the ends of the grid, where the clamp starts
        case["x"] = ((edge - np.asarray(z) + offsets) * np.asarray(s)).astype(np.float32)
    case["grad_out"] = draw(arrays(case["x"].shape, -5.0, 5.0))
    del case["dtype"]
    return case


@st.composite
def _ste_edge_ties(draw):
    """x / scale within a float32 rounding of qmin - 1/2 or qmax + 1/2 (shifted by the zero
    point): where the clamp starts, the float32 quotient decides (not x * (1 / scale))."""
    qmin, qmax = draw(_grids)
    n = draw(st.integers(1, 4))
    # float32 scales with full 24-bit significands (x * (1 / scale) differs from x / scale)
    scale = np.array([draw(st.integers(2**23 + 1, 2**24 - 1)) * 2.0 ** draw(st.integers(-33, -22))
                      for _ in range(n)], dtype=np.float32)
    zp = np.array([draw(st.integers(qmin, qmax)) for _ in range(n)], dtype=np.int64)
    rows = draw(st.integers(1, 6))
    ends = np.array([[draw(st.sampled_from([qmin - 0.5, qmax + 0.5, qmin + 0.5, qmax - 0.5])) for _ in range(n)]
                     for _ in range(rows)])
    x = ((ends - zp) * scale.astype(np.float64)).astype(np.float32)
    return {"grad_out": draw(arrays(x.shape, -5.0, 5.0)), "x": x, "scale": scale, "zero_point": zp, "qmin": qmin,
            "qmax": qmax, "rounding": draw(st.sampled_from(["half_even", "half_away"]))}


def _verify_ste(fn, case):
    g, x, s, z, qmin, qmax, r = (case[k] for k in ("grad_out", "x", "scale", "zero_point", "qmin", "qmax", "rounding"))
    q32 = np.asarray(x, dtype=np.float32) / np.asarray(s, dtype=np.float32)
    rnd = np.rint if r == "half_even" else np.vectorize(_round_away, otypes=[np.float64])
    pos = np.asarray(rnd(q32.astype(np.float64))) + z
    want = np.where((pos >= qmin) & (pos <= qmax), g, 0.0)
    got = fn(g, x, s, z, qmin, qmax, rounding=r)
    expect_equal(got, want, "grad_out where qmin <= round(x / scale) + zero_point <= qmax (before the "
                 "clamp), else 0", dtype=False)


def ste_laws() -> tuple:
    """The laws and worked values of ``ste``: a tuple of :class:`~nnref.laws.core.Law`."""
    edge = {"grad_out": np.array([1.0, 1.0, 1.0, 1.0]), "x": np.array([127.4, 127.6, -128.4, -128.6]),
            "scale": 1.0, "zero_point": 0, "qmin": -128, "qmax": 127, "rounding": "half_even"}
    return (
        Law("straight through", "the gradient passes where the rounded value is inside the grid "
            "(clamp not active), and is 0 where the clamp acts", _ste_cases(), _verify_ste, 50),
        Law("near ties at the ends", "at x / scale next to qmin - 1/2 and qmax + 1/2 the float32 quotient "
            "decides whether the clamp acts", _ste_edge_ties(), _verify_ste, 40),
        worked("127.4 rounds to 127 (passes), 127.6 to 128 (clamped, 0)", edge, _verify_ste),
        # / 0.5: 127 (in), 127.5 -> 128 (out, both roundings), 128 (out), -128 (in), -128.6 (out)
        by_hand("scale 0.5: [63.5, 63.75, 64, -64, -64.3] -> mask [1, 0, 0, 1, 0]",
                {"grad_out": np.ones(5), "x": np.array([63.5, 63.75, 64.0, -64.0, -64.3]), "scale": 0.5,
                 "zero_point": 0, "qmin": -128, "qmax": 127, "rounding": "half_away"},
                lambda fn, c: fn(c["grad_out"], c["x"], c["scale"], c["zero_point"], c["qmin"], c["qmax"],
                                 rounding=c["rounding"]), np.array([1.0, 0.0, 0.0, 1.0, 0.0])),
        # grid [-2, 1]: 1.4 -> 1 (in), 1.6 -> 2 (clamped), -2.5 -> -2 (half to even: in)
        by_hand("grid [-2, 1]: 1.4 passes, 1.6 is clamped, -2.5 rounds to -2 and passes",
                {"grad_out": np.ones(3), "x": np.array([1.4, 1.6, -2.5]), "scale": 1.0, "zero_point": 0, "qmin": -2,
                 "qmax": 1, "rounding": "half_even"},
                lambda fn, c: fn(c["grad_out"], c["x"], c["scale"], c["zero_point"], c["qmin"], c["qmax"],
                                 rounding=c["rounding"]), np.array([1.0, 0.0, 1.0])),
        unchanged_law(_ste_cases(), lambda fn, c: fn(c["grad_out"], c["x"], c["scale"], c["zero_point"],
                                                     c["qmin"], c["qmax"], rounding=c["rounding"])),
    )
