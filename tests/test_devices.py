"""Device requests: what ``--device`` accepts."""

import pytest

from lipsync_render.devices import DeviceRequest
from lipsync_render.errors import DeviceError


@pytest.mark.parametrize(
    "text, kind, index",
    [("auto", "auto", 0), ("CPU", "cpu", 0), ("cuda", "cuda", 0), ("cuda:1", "cuda", 1), ("tensorrt", "tensorrt", 0)],
)
def test_parse_device(text, kind, index):
    assert DeviceRequest.parse(text) == DeviceRequest(kind, index)


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "metal"])
def test_parse_unknown_device(text):
    with pytest.raises(DeviceError, match="Unknown device"):
        DeviceRequest.parse(text)
