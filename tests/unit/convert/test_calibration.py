"""Static quantization's calibration reader: one row per feed, capped, or the whole batch."""

from __future__ import annotations

import numpy as np

from modelport.convert.quantize import MAX_CALIBRATION_ROWS, CalibrationReader


def drain(reader: CalibrationReader) -> list[dict[str, np.ndarray]]:
    feeds = []
    while (feed := reader.get_next()) is not None:
        feeds.append(feed)
    return feeds


def test_rows_are_fed_one_at_a_time_with_a_batch_dimension() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    ids = np.arange(3, dtype=np.int64).reshape(3, 1)
    feeds = drain(CalibrationReader({"x": x, "ids": ids}))
    assert len(feeds) == 3
    np.testing.assert_array_equal(feeds[2]["x"], x[2:3])
    np.testing.assert_array_equal(feeds[2]["ids"], ids[2:3])


def test_calibration_stops_at_the_row_cap() -> None:
    reader = CalibrationReader({"x": np.zeros((MAX_CALIBRATION_ROWS + 5, 2), np.float32)})
    assert reader.rows == MAX_CALIBRATION_ROWS
    assert len(drain(reader)) == MAX_CALIBRATION_ROWS


def test_a_fixed_batch_model_gets_the_whole_array_once() -> None:
    x = np.ones((4, 2), np.float32)
    feeds = drain(CalibrationReader({"x": x}, per_row=False))
    assert len(feeds) == 1
    assert feeds[0]["x"].shape == (4, 2)
