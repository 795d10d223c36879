"""The parity rules: tolerances, NaN and infinity, classes, labels, shapes and matching."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.convert.parity import compare_outputs
from modelport.convert.tolerance import DEFAULTS, Tolerance, tolerance_for

TOL = Tolerance(atol=1e-3, rtol=1e-2, min_agreement=1.0)


def compare(ref: np.ndarray, got: np.ndarray, tol: Tolerance = TOL):  # type: ignore[no-untyped-def]
    (result,), _ = compare_outputs({"y": ref}, {"y": got}, ["y"], tol)
    return result


def test_errors_within_atol_plus_rtol_pass_and_report_their_size() -> None:
    ref = np.array([[1.0, 100.0, 0.0]], np.float32)
    got = ref + np.array([[0.005, 0.9, 0.0005]], np.float32)  # each under its allowance
    result = compare(ref, got)
    assert result.passed
    assert result.max_abs_error == pytest.approx(0.9, rel=1e-5)
    assert result.max_rel_error == pytest.approx(0.009, rel=1e-3)
    assert 0.5 < result.tolerance_used <= 1  # type: ignore[operator]
    assert result.agreement == 1.0


def test_one_element_over_its_allowance_fails_and_says_by_how_much() -> None:
    ref = np.zeros((2, 2), np.float32)
    got = ref.copy()
    got[1, 1] = 0.004
    result = compare(ref, got)
    assert not result.passed
    assert result.tolerance_used == pytest.approx(4, rel=1e-3)
    assert "4x the allowance" in str(result.reason)


def test_nan_matches_nan_and_infinity_matches_itself_only() -> None:
    ref = np.array([np.nan, np.inf, 1.0], np.float32)
    assert compare(ref, ref.copy()).passed
    overflowed = np.array([np.nan, np.inf, np.inf], np.float32)
    result = compare(ref, overflowed)
    assert not result.passed
    assert result.max_abs_error == np.inf


def test_scores_must_agree_on_the_top_class() -> None:
    ref = np.array([[0.1, 0.9], [0.7, 0.3], [0.2, 0.8], [0.7, 0.3]], np.float32)
    got = ref.copy()
    got[1] = [0.45, 0.55]  # each score within atol 0.3, but the top class flips
    loose = Tolerance(atol=0.3, rtol=0.0, min_agreement=0.75)
    assert compare(ref, got, loose).passed
    assert compare(ref, got, loose).agreement == 0.75
    strict = Tolerance(atol=0.3, rtol=0.0, min_agreement=0.9)
    result = compare(ref, got, strict)
    assert not result.passed
    assert "top class agrees on 75.0% of rows" in str(result.reason)


def test_a_flip_between_classes_tied_within_tolerance_still_agrees() -> None:
    ref = np.array([[0.50, 0.45], [0.1, 0.9]], np.float32)
    got = np.array([[0.46, 0.49], [0.1, 0.9]], np.float32)
    assert compare(ref, got, Tolerance(atol=0.1, rtol=0.0, min_agreement=1.0)).agreement == 1.0
    assert compare(ref, got, Tolerance(atol=0.01, rtol=0.0, min_agreement=1.0)).agreement == 0.5


def test_integer_labels_are_compared_by_agreement_and_other_integers_exactly() -> None:
    labels = np.array([0, 1, 2, 3], np.int64)
    flipped = np.array([0, 1, 2, 0], np.int64)
    assert compare(labels, flipped, Tolerance(0, 0, 0.75)).passed
    assert not compare(labels, flipped, Tolerance(0, 0, 0.8)).passed
    grid = np.arange(6).reshape(2, 3)
    changed = grid.copy()
    changed[0, 0] = 9
    result = compare(grid, changed, Tolerance(100, 100, 0.0))
    assert not result.passed
    assert result.agreement is None


def test_text_outputs_compare_as_text_whatever_their_encoding() -> None:
    ref = np.array(["cat", "dog"])
    got = np.array([b"cat", b"dog"], dtype=object)
    assert compare(ref, got).passed


def test_a_shape_change_fails() -> None:
    result = compare(np.zeros((4, 1), np.float32), np.zeros((4,), np.float32))
    assert not result.passed
    assert "shape (4,) differs from the source's (4, 1)" in str(result.reason)


def test_outputs_match_by_name_else_by_position() -> None:
    source = {"out0": np.zeros(2, np.float32), "out1": np.ones(2, np.float32)}
    result = {"a": np.zeros(2, np.float32), "b": np.ones(2, np.float32)}
    outputs, note = compare_outputs(source, result, ["a", "b"], TOL)
    assert all(o.passed for o in outputs)
    assert note is not None
    assert "by position" in note
    outputs, note = compare_outputs({"b": result["b"]}, result, ["a", "b"], TOL)
    assert [o.passed for o in outputs] == [False, True]
    assert note is None


def test_each_step_has_defaults_that_flags_override() -> None:
    assert tolerance_for("convert") == DEFAULTS["convert"] == Tolerance(1e-4, 1e-3, 1.0)
    assert DEFAULTS["fp16"].atol > DEFAULTS["convert"].atol
    assert DEFAULTS["dynamic-int8"].atol > DEFAULTS["fp16"].atol
    assert tolerance_for("fp16", rtol=0.5) == Tolerance(1e-2, 0.5, 0.99)


def test_cosine_similarity_is_reported_and_with_min_cosine_replaces_element_errors() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((8, 64)).astype(np.float32)
    got = ref + rng.normal(0, 0.05, ref.shape).astype(np.float32)  # far over TOL elementwise
    plain = compare(ref, got)
    assert plain.passed is False
    assert plain.min_cosine is not None
    assert 0.99 < plain.min_cosine < 1.0
    cosine = compare(ref, got, Tolerance(1e-3, 1e-2, 1.0, min_cosine=0.99))
    assert cosine.passed is True
    assert cosine.max_abs_error == plain.max_abs_error  # still reported
    strict = compare(ref, got, Tolerance(1e-3, 1e-2, 1.0, min_cosine=0.9999))
    assert strict.passed is False
    assert "cosine similarity with the source is 0.99" in str(strict.reason)
    assert "under the 0.9999 required" in str(strict.reason)


def test_cosine_of_zero_rows_and_non_finite_rows() -> None:
    zero = np.zeros((2, 3), np.float32)
    assert compare(zero, zero.copy()).min_cosine == 1.0
    broken = np.array([[1.0, np.nan, 0.0]], np.float32)
    assert compare(np.ones((1, 3), np.float32), broken).min_cosine == 0.0
    assert compare(np.ones(3, np.float32), np.ones(3, np.float32)).min_cosine is None
    assert tolerance_for("dynamic-int8", min_cosine=0.98).min_cosine == 0.98
    assert tolerance_for("dynamic-int8").min_cosine is None
