"""Input validation shared by every public function.

Every check raises a ``TypeError`` (wrong kind of thing, wrong dtype) or a ``ValueError``
(right kind, wrong shape, range or value) whose message names the argument, says what was
expected and what was received. Failing loudly here is what keeps numpy from silently
broadcasting, wrapping around or propagating NaN further down.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "as_float_array",
    "as_int_array",
    "as_rng",
    "check_finite",
    "check_labels",
    "check_positive",
    "check_nonnegative",
    "check_int_in_range",
    "check_float_dtype",
    "check_grads",
    "check_params_like",
    "check_norm_type",
    "check_names",
    "check_float32_range",
    "pack_like",
    "describe",
]


def describe(x) -> str:
    """A short description of ``x`` for error messages: type, dtype and shape."""
    if isinstance(x, np.ndarray):
        return f"array of dtype {x.dtype} and shape {x.shape}"
    if isinstance(x, (list, tuple)):
        return f"{type(x).__name__} of length {len(x)}"
    if isinstance(x, dict):
        return f"dict with keys {list(x)[:8]}" + (" ..." if len(x) > 8 else "")
    text = repr(x)
    return f"{type(x).__name__} {text if len(text) <= 80 else text[:77] + '...'}"


def check_finite(x: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` if the floating array ``x`` holds NaN or infinity."""
    if x.dtype.kind not in "fc":
        return
    # Fast path: a sum of squares is finite only if no entry is NaN or infinite, since NaN
    # and inf propagate, and as a BLAS dot it costs a fraction of an elementwise test. The
    # elementwise test is needed only when the dot is not finite: then either an entry is,
    # or finite entries overflowed it.
    if x.dtype.char in "fd":
        if np.isfinite(np.vdot(x, x)):  # vdot: no floating-point warning on overflow
            return
    if not np.all(np.isfinite(x)):
        n_nan = int(np.isnan(x).sum())
        n_inf = int(np.isinf(x).sum())
        raise ValueError(
            f"{name}: expected finite values, got {n_nan} NaN and {n_inf} infinite "
            f"entries in an array of shape {x.shape}"
        )


def _check_ndim_and_size(arr: np.ndarray, name: str, ndim, allow_empty: bool) -> None:
    """Raise ``ValueError`` for a wrong number of dimensions or an unwanted empty array."""
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name}: expected a {want} array, got shape {arr.shape}")
    if not allow_empty and arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty array, got shape {arr.shape}")


def as_float_array(
    x,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    dtype=None,
    finite: bool = True,
    allow_empty: bool = False,
) -> np.ndarray:
    """Return ``x`` as a floating-point ndarray after checking it.

    Accepts any real numeric array-like (bool is refused: it is almost always a mistake).
    Integer input is converted to ``dtype`` (default float64); floating input keeps its
    dtype unless ``dtype`` is given.
    """
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:  # ragged lists and the like
            raise TypeError(f"{name}: expected a numeric array, got {describe(x)} ({exc})") from None
    if arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{name}: expected a real numeric array (integer or floating dtype), "
            f"got dtype {arr.dtype}"
        )
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    elif arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    _check_ndim_and_size(arr, name, ndim, allow_empty)
    if finite:
        check_finite(arr, name)
    return arr


def as_int_array(x, name: str, *, dtype=None, ndim=None, allow_empty: bool = False) -> np.ndarray:
    """Return ``x`` as an integer ndarray, refusing floats instead of truncating them.

    With ``dtype`` given the array must already have exactly that dtype: integer kernels
    never cast silently, because a cast is where wrap-around hides.
    """
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, got dtype {arr.dtype}")
    if dtype is not None and arr.dtype != np.dtype(dtype):
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype)}, got dtype {arr.dtype}")
    _check_ndim_and_size(arr, name, ndim, allow_empty)
    return arr


def check_labels(labels, n: int, num_classes: int, name: str = "labels") -> np.ndarray:
    """Check class labels: 1-D integers in ``[0, num_classes)``, one per example."""
    arr = labels if isinstance(labels, np.ndarray) else np.asarray(labels)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer class indices, got dtype {arr.dtype}")
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},) (one label per example), got {arr.shape}")
    if n and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(
            f"{name}: expected values in [0, {num_classes - 1}], "
            f"got values in [{arr.min()}, {arr.max()}]"
        )
    return arr.astype(np.intp, copy=False)


def _real_scalar(value, name: str) -> float:
    """``value`` as a finite Python float, or a ``TypeError``/``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(f"{name}: expected a real number, got {describe(value)}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {v}")
    return v


def check_positive(value, name: str) -> float:
    """Return ``value`` as a float after checking it is a finite number > 0."""
    v = _real_scalar(value, name)
    if v <= 0:
        raise ValueError(f"{name}: expected a number > 0, got {v}")
    return v


def check_nonnegative(value, name: str) -> float:
    """Return ``value`` as a float after checking it is a finite number >= 0."""
    v = _real_scalar(value, name)
    if v < 0:
        raise ValueError(f"{name}: expected a number >= 0, got {v}")
    return v


def check_int_in_range(value, name: str, lo: int, hi: int) -> int:
    """Return ``value`` as an int after checking ``lo <= value <= hi``."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {describe(value)}")
    v = int(value)
    if not lo <= v <= hi:
        raise ValueError(f"{name}: expected an integer in [{lo}, {hi}], got {v}")
    return v


def as_rng(seed) -> np.random.Generator:
    """Turn a seed (a non-negative int or None) or a ``numpy.random.Generator`` into a
    Generator.

    ``None`` is accepted only because numpy accepts it; nnref's own defaults are seeds,
    so every documented run is reproducible.

    Raises
    ------
    TypeError
        ``seed`` is not an int, None or Generator (a float, a string, a bool).
    ValueError
        ``seed`` is a negative int (numpy's seeds are non-negative).
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, (numbers.Integral, np.integer)) and not isinstance(seed, bool)):
        if seed is not None and seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, None or numpy.random.Generator, got {seed}")
        return np.random.default_rng(seed)
    raise TypeError(f"seed: expected an int, None or numpy.random.Generator, got {describe(seed)}")


def check_float32_range(x: np.ndarray, name: str) -> np.ndarray:
    """Return the finite floating array ``x`` after checking ``|x| <= float32 max``.

    For values that stand for a float32 model's weights or activations: beyond float32
    they are not such values, and squaring them (a reconstruction error, a scale search)
    would overflow even float64 into a silent inf or NaN.

    Raises
    ------
    ValueError
        Naming ``name``, with the largest magnitude received.
    """
    big = float(np.max(np.abs(x))) if x.size else 0.0
    if big > float(np.finfo(np.float32).max):
        raise ValueError(f"{name}: expected values within float32's range (|x| <= "
                         f"{float(np.finfo(np.float32).max):.4g}), got |x| up to {big:.4g}")
    return x


def check_float_dtype(dtype, name: str = "dtype") -> np.dtype:
    """``dtype`` as a numpy float16, float32 or float64 dtype.

    Raises
    ------
    TypeError
        Not a dtype (``"bogus"``), or not one of the three float dtypes (an integer dtype
        would truncate weights).
    """
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected float16, float32 or float64, got {dtype!r}") from None
    if dt not in (np.float16, np.float32, np.float64):
        raise TypeError(f"{name}: expected float16, float32 or float64, got {dt}")
    return dt


# ----------------------------------------------------------------------------- gradients


def check_grads(grads, name: str, *, finite: bool = False) -> tuple[list, list[np.ndarray]]:
    """``(keys, arrays)`` of a gradient structure after checking it.

    Parameters
    ----------
    grads : dict name -> array, or list/tuple of arrays
        Keys are the dict's names, or the list positions.
    name : str
        The argument's name, for messages.
    finite : bool
        Also refuse NaN and infinite entries.

    Returns
    -------
    keys : list
    arrays : list of floating ndarrays (integer and list input read as float64)

    Raises
    ------
    TypeError
        Neither a dict nor a list/tuple, or an entry that is not a real numeric array.
    ValueError
        A non-finite entry when ``finite`` is True.
    """
    if isinstance(grads, dict):
        keys, arrays = list(grads), list(grads.values())
    elif isinstance(grads, (list, tuple)):
        keys, arrays = list(range(len(grads))), list(grads)
    else:
        raise TypeError(f"{name}: expected a dict name -> array or a list of arrays, got {describe(grads)}")
    if not finite and all(type(a) is np.ndarray and a.dtype.kind == "f" for a in arrays):
        return keys, arrays  # already what as_float_array would return (the hot path)
    arrays = [as_float_array(grads[k], f"{name}[{k!r}]", finite=finite, allow_empty=True) for k in keys]
    return keys, arrays


def pack_like(like, keys: list, arrays: list):
    """Rebuild the structure of ``like`` (dict, list or tuple) around ``arrays``."""
    if isinstance(like, dict):
        return dict(zip(keys, arrays))
    return type(like)(arrays) if isinstance(like, tuple) else list(arrays)


def check_params_like(params, grads, keys: list, g_arrays: list) -> list[np.ndarray]:
    """The arrays of ``params``, in the order of ``grads``, after checking both match
    (same kind of structure, same keys or length, same shapes, finite parameters)."""
    if isinstance(params, dict) != isinstance(grads, dict):
        raise TypeError(
            f"params: expected the same kind of structure as grads ({type(grads).__name__}), "
            f"got {describe(params)}"
        )
    p_keys, p_arrays = check_grads(params, "params", finite=True)
    if isinstance(grads, dict):
        if set(p_keys) != set(keys):
            raise ValueError(f"params: expected the keys of grads {keys}, got {p_keys}")
        by_key = dict(zip(p_keys, p_arrays))
        p_arrays = [by_key[k] for k in keys]
    elif len(p_arrays) != len(g_arrays):
        raise ValueError(f"params: expected {len(g_arrays)} arrays (one per gradient), got {len(p_arrays)}")
    for k, g, w in zip(keys, g_arrays, p_arrays):
        if w.shape != g.shape:
            raise ValueError(f"params[{k!r}]: expected shape {g.shape} (that of grads[{k!r}]), got {w.shape}")
    return p_arrays


def check_norm_type(norm_type) -> float:
    """``p`` of a p-norm as a float: any number > 0, ``float('inf')`` included."""
    if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real):
        raise TypeError(f"norm_type: expected a real number > 0 or float('inf'), got {describe(norm_type)}")
    p = float(norm_type)
    if not p > 0:  # also refuses NaN
        raise ValueError(f"norm_type: expected a number > 0 or float('inf'), got {p}")
    return p


def check_names(names, name: str = "skip") -> tuple:
    """A collection of names as a tuple; a bare string is refused (it would be read
    letter by letter)."""
    if not isinstance(names, (list, tuple, set, frozenset)):
        raise TypeError(f"{name}: expected a list or tuple of names, e.g. ('W2', 'b2'), got {describe(names)}")
    return tuple(names)
