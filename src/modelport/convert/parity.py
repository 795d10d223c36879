"""Comparing a result's outputs with its source's on the same inputs.

Per output: the largest absolute error, the largest relative error (over elements whose source
value is larger than ``atol``, where a relative error means something), the share of the
tolerance used by the worst element (above 1 fails), and for classifier-like outputs the share of
rows whose top class agrees, and for float outputs with rows the least cosine similarity of a row
with the source's row. The rules are in ``modelport.convert.tolerance``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.convert.runner import Feeds
from modelport.convert.tolerance import Tolerance

__all__ = ["OutputParity", "compare_outputs", "pair_outputs"]

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class OutputParity:
    """How one output of the result compares with the source's."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    max_abs_error: float | None
    max_rel_error: float | None
    #: The worst element's error over its allowance ``atol + rtol * |source|``; above 1 fails.
    tolerance_used: float | None
    #: The share of rows whose class (argmax of scores, or the label) agrees; None if no classes.
    agreement: float | None
    passed: bool
    reason: str | None = None
    #: The least cosine similarity of a row (flattened) with the source's; None if no rows.
    min_cosine: float | None = None


def pair_outputs(
    source: Feeds, result: Feeds, result_names: Sequence[str]
) -> tuple[list[tuple[str, Array | None, Array]], str | None]:
    """Each result output with the source output it is compared to, and a note on how they
    were matched: by name when the source has every name, else by position."""
    if all(name in source for name in result_names):
        return [(name, source[name], result[name]) for name in result_names], None
    if len(source) == len(result_names):
        pairs: list[tuple[str, Array | None, Array]] = [
            (name, array, result[name])
            for name, array in zip(result_names, source.values(), strict=True)
        ]
        note = f"outputs matched by position: source {list(source)} -> result {list(result_names)}"
        return pairs, note
    return [(name, source.get(name), result[name]) for name in result_names], None


def compare_outputs(
    source: Feeds, result: Feeds, result_names: Sequence[str], tolerance: Tolerance
) -> tuple[list[OutputParity], str | None]:
    """Compare every result output; the second value notes how outputs were matched."""
    pairs, note = pair_outputs(source, result, result_names)
    return [_compare(name, ref, got, tolerance) for name, ref, got in pairs], note


def _compare(name: str, ref: Array | None, got: Array, tolerance: Tolerance) -> OutputParity:
    shape = tuple(int(d) for d in got.shape)
    if ref is None:
        return _failed(name, got, "the source has no output of that name or position")
    if ref.shape != got.shape:
        return _failed(name, got, f"shape {shape} differs from the source's {tuple(ref.shape)}")
    if _is_text(ref) or _is_text(got):
        equal = float(np.mean(_as_text(ref) == _as_text(got))) if got.size else 1.0
        label = got.ndim == 1 or (got.ndim == 2 and got.shape[1] == 1)
        return _exact(name, got, equal, label=label, tolerance=tolerance)
    if got.dtype.kind in "biu" and ref.dtype.kind in "biu":
        equal = float(np.mean(ref == got)) if got.size else 1.0
        errors = _errors(ref.astype(np.float64), got.astype(np.float64), tolerance)
        label = got.dtype.kind != "b" and (got.ndim == 1 or (got.ndim == 2 and got.shape[1] == 1))
        return _exact(name, got, equal, label=label, tolerance=tolerance, errors=errors)
    return _close(name, ref.astype(np.float64), got, tolerance)


def _close(name: str, ref: Array, got: Array, tolerance: Tolerance) -> OutputParity:
    max_abs, max_rel, used = _errors(ref, got.astype(np.float64), tolerance)
    agreement = None
    if got.ndim == 2 and got.shape[1] > 1 and got.shape[0] > 0:
        agreement = _top_class_agreement(ref, got, tolerance)
    cosine = _min_cosine(ref, got.astype(np.float64)) if got.ndim >= 2 and got.size else None
    reasons = []
    if tolerance.min_cosine is not None and cosine is not None:
        if cosine < tolerance.min_cosine:
            reasons.append(
                f"a row's cosine similarity with the source is {cosine:.6f}, under the "
                f"{tolerance.min_cosine:g} required"
            )
    elif used > 1:
        reasons.append(
            f"errors exceed atol {tolerance.atol:g} + rtol {tolerance.rtol:g} x |source| "
            f"({used:.3g}x the allowance)"
        )
    if agreement is not None and agreement < tolerance.min_agreement:
        reasons.append(_agreement_reason(agreement, tolerance))
    return OutputParity(
        name,
        tuple(int(d) for d in got.shape),
        str(got.dtype),
        max_abs,
        max_rel,
        used,
        agreement,
        passed=not reasons,
        reason="; ".join(reasons) or None,
        min_cosine=cosine,
    )


def _min_cosine(ref: Array, got: Array) -> float:
    """The least cosine similarity of a row of ``got`` with the same row of ``ref``.

    Rows that are zero in both count as identical; a non-finite value makes the row's
    similarity NaN, reported as 0 so that it fails any gate.
    """
    a = ref.reshape(len(ref), -1)
    b = got.reshape(len(got), -1)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        dot = np.sum(a * b, axis=1)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        both_zero = (np.linalg.norm(a, axis=1) == 0) & (np.linalg.norm(b, axis=1) == 0)
        cosine = np.where(both_zero, 1.0, dot / np.where(norms == 0, np.inf, norms))
    cosine = np.where(np.isfinite(cosine), cosine, 0.0)
    return float(np.clip(cosine.min(), -1.0, 1.0))


def _top_class_agreement(ref: Array, got: Array, tolerance: Tolerance) -> float:
    """The share of rows whose top class agrees. A row whose chosen class scores, in the source,
    within the tolerance of the source's top score counts as agreeing: a tie within tolerance."""
    rows = np.arange(len(ref))
    best, picked = np.argmax(ref, axis=1), np.argmax(got, axis=1)
    top, chosen = ref[rows, best], ref[rows, picked]
    with np.errstate(invalid="ignore"):
        tied = top - chosen <= tolerance.atol + tolerance.rtol * np.abs(top)
    return float(np.mean((best == picked) | tied))


def _errors(ref: Array, got: Array, tolerance: Tolerance) -> tuple[float, float, float]:
    """Largest absolute error, largest relative error and the share of the allowance used."""
    if not got.size:
        return 0.0, 0.0, 0.0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        same = (np.isnan(ref) & np.isnan(got)) | (np.isinf(ref) & (ref == got))
        diff = np.where(same, 0.0, np.abs(got - ref))
        diff = np.where(np.isnan(diff), np.inf, diff)
        magnitude = np.abs(ref)
        allowance = tolerance.atol + tolerance.rtol * np.where(np.isfinite(magnitude), magnitude, 0)
        used = np.where(diff == 0, 0.0, np.divide(diff, allowance))
        meaningful = np.isfinite(magnitude) & (magnitude > tolerance.atol)
        relative = np.where(meaningful, diff / np.where(meaningful, magnitude, 1.0), 0.0)
    return float(diff.max()), float(relative.max()), float(used.max())


def _exact(
    name: str,
    got: Array,
    equal: float,
    *,
    label: bool,
    tolerance: Tolerance,
    errors: tuple[float, float, float] | None = None,
) -> OutputParity:
    """Labels must agree on ``min_agreement`` of the rows; other exact outputs on every one."""
    if label:
        passed = equal >= tolerance.min_agreement
        reason = None if passed else _agreement_reason(equal, tolerance)
    else:
        passed = equal == 1.0
        reason = None if passed else f"{1 - equal:.1%} of the values differ from the source's"
    max_abs, max_rel, _ = errors if errors is not None else (None, None, None)
    return OutputParity(
        name,
        tuple(int(d) for d in got.shape),
        str(got.dtype),
        max_abs,
        max_rel,
        None,
        equal if label else None,
        passed,
        reason,
    )


def _failed(name: str, got: Array, reason: str) -> OutputParity:
    shape = tuple(int(d) for d in got.shape)
    return OutputParity(name, shape, str(got.dtype), None, None, None, None, False, reason)


def _agreement_reason(agreement: float, tolerance: Tolerance) -> str:
    return (
        f"top class agrees on {agreement:.1%} of rows, under the "
        f"{tolerance.min_agreement:.1%} required"
    )


def _is_text(array: Array) -> bool:
    return array.dtype.kind in "OSU"


def _as_text(array: Array) -> Array:
    flat = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.flat]
    return np.array(flat, dtype=object).reshape(array.shape)
