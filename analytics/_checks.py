"""Input checks shared by the public wrappers: dtype, rank and shape, with fix-it hints."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def as_float(name: str, value: ArrayLike, ndim: int) -> NDArray[np.float64]:
    """Coerce to a contiguous float64 array of rank ``ndim``.

    Raises:
        TypeError: non-numeric input.
        ValueError: wrong rank.
    """
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}; pass a float64 array")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def as_int(name: str, value: ArrayLike, ndim: int) -> NDArray[np.int64]:
    """Coerce to a contiguous int64 array of rank ``ndim``.

    Raises:
        TypeError: non-integer input.
        ValueError: wrong rank.
    """
    arr = np.asarray(value)
    if arr.dtype.kind not in "iub":
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def as_bool(name: str, value: ArrayLike, ndim: int) -> NDArray[np.bool_]:
    """Coerce to a contiguous bool array of rank ``ndim``.

    Raises:
        TypeError: input that is not bool or 0/1 integers.
        ValueError: wrong rank.
    """
    arr = np.asarray(value)
    if arr.dtype.kind not in "biu":
        raise TypeError(f"{name} must be a bool mask, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.bool_)


def per_meter(name: str, value: Any, n: int, dtype: Any, default: Any) -> NDArray[Any]:
    """Broadcast a scalar or an (n,) array to a contiguous (n,) array of ``dtype``.

    Raises:
        ValueError: an array of another length.
    """
    if value is None:
        value = default
    arr = np.asarray(value, dtype=dtype)
    if arr.ndim == 0:
        return np.full(n, arr, dtype=dtype)
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have shape ({n},), got {arr.shape}")
    return np.ascontiguousarray(arr)


def same_shape(name: str, arr: NDArray[Any], shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless ``arr.shape == shape``."""
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")


EMPTY_F2 = np.empty((0, 0), dtype=np.float64)
EMPTY_B2 = np.empty((0, 0), dtype=np.bool_)
EMPTY_F1 = np.empty(0, dtype=np.float64)
EMPTY_I1 = np.empty(0, dtype=np.int64)
EMPTY_F3 = np.empty((0, 0, 0), dtype=np.float64)
EMPTY_U1_2D = np.empty((0, 0), dtype=np.uint8)
EMPTY_U1_3D = np.empty((0, 0, 0), dtype=np.uint8)
