"""Value rules beyond choices and bounds: output sizes and feather widths."""

import pytest

from lipsync_render.option_values import FEATHER_PIXELS, feather_pixels, feather_problem, frame_size, size_problem


def test_frame_sizes():
    assert frame_size("1280x720") == (1280, 720) and frame_size("640X360") == (640, 360)
    assert size_problem("1280x720") is None
    for bad in ("1279x720", "14x14", "4098x720"):
        assert "even width and height" in size_problem(bad)


@pytest.mark.parametrize("value, pixels", [("hard", 0), ("feather", FEATHER_PIXELS), ("feather:5", 5)])
def test_feather_widths(value, pixels):
    assert feather_pixels(value) == pixels and feather_problem(value) is None


def test_feather_widths_out_of_range():
    assert "feather width of 1 to 64" in feather_problem("feather:0")
    assert "feather width of 1 to 64" in feather_problem("feather:65")
