"""The --frames-store value: parsed once for build and synth, refused with exit 2 when it cannot work."""

import pytest

from lipsync_render.errors import OptionError
from lipsync_render.store_choice import DEFAULT_JPEG_QUALITY, JPEG_TILE, StoreChoice, parse_frames_store, store_choice


@pytest.mark.parametrize(
    "text, expected",
    [
        ("npy", StoreChoice()),
        ("jpeg", StoreChoice("jpeg", DEFAULT_JPEG_QUALITY, JPEG_TILE)),
        ("JPEG:75", StoreChoice("jpeg", 75, JPEG_TILE)),
        (" jpeg:1 ", StoreChoice("jpeg", 1, JPEG_TILE)),
        ("jpeg:100", StoreChoice("jpeg", 100, JPEG_TILE)),
    ],
)
def test_parse_frames_store(text, expected):
    assert parse_frames_store(text) == expected
    assert store_choice({"format_version": 2, "frames_store": expected.manifest_entry()}) == expected


@pytest.mark.parametrize("text", ["jpeg:0", "jpeg:101", "jpeg:-5", "jpeg:9.5", "jpeg:", "npy:90", "png", ""])
def test_bad_values_are_option_errors(text):
    with pytest.raises(OptionError, match="--frames-store") as error:
        parse_frames_store(text)
    assert error.value.exit_code == 2


def test_version_1_manifests_are_npy_whatever_they_say():
    assert store_choice({"format_version": 1, "frames_store": {"codec": "jpeg"}}) == StoreChoice()
    assert str(parse_frames_store("jpeg:80")) == "jpeg:80" and str(StoreChoice()) == "npy"
