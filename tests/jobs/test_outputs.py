"""Which MP4 each audio of one render call gets, from Python: the same refusals as the CLI, as OptionError."""

from pathlib import Path

import pytest

from lipsync_render.errors import OptionError
from lipsync_render.jobs.outputs import planned_outputs


def test_each_audio_gets_its_stem_in_the_out_dir(tmp_path):
    audio = [tmp_path / "a.wav", tmp_path / "sub" / "b.flac"]
    assert planned_outputs(audio, out_dir=tmp_path / "out") == [tmp_path / "out" / "a.mp4", tmp_path / "out" / "b.mp4"]
    assert (tmp_path / "out").is_dir()
    assert planned_outputs([Path("x/talk.wav")]) == [Path("talk.mp4")]


def test_colliding_outputs_and_overwritten_inputs_are_refused(tmp_path):
    with pytest.raises(OptionError, match="would both be written to"):
        planned_outputs([tmp_path / "a" / "talk.wav", tmp_path / "b" / "talk.wav"], out_dir=tmp_path)
    wav = tmp_path / "in.wav"
    wav.touch()
    with pytest.raises(OptionError, match="is the input"):
        planned_outputs([wav], output=wav)
