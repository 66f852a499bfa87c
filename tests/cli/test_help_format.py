"""Help and completion as a user's shell sees them: the installed entry point, run as a process."""

import os
import re
import shlex
import subprocess
import sys

import pytest

from lipsync_render.options import CLI, options_for


def lipsync(*args, env=None):
    command = [sys.executable, "-m", "lipsync_render", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("command", [[], ["render"], ["bench"], ["render-many"], ["package", "synth"]])
def test_help_has_conventional_placeholders(command):
    result = lipsync(*command, "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert not re.search(r"<\w[\w\[\]]*>", result.stdout), result.stdout  # no <bool>, <int>, <list[Path]>
    assert not re.search(r"\S  +[.,;)]", result.stdout)  # no stray spaces before punctuation
    if command == ["render"]:
        assert "Usage: lipsync render [OPTIONS] AUDIO..." in result.stdout
        assert re.search(r"--batch-size\s+-b\s+INTEGER", result.stdout)
        assert re.search(r"--quiet\s+-q\s+No progress bar", result.stdout)  # a flag takes no value


def test_every_option_help_text_is_tidy():
    for option in options_for(CLI):
        text = option.spec.help
        assert text == text.strip() and "  " not in text and text.endswith("."), option.name


def test_show_completion_prints_a_script_for_the_shell_it_runs_in():
    command = f"{shlex.quote(sys.executable)} -m lipsync_render --show-completion"
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "_LIPSYNC_COMPLETE=complete_bash" in result.stdout


def test_completion_of_commands_and_choice_values():
    def complete(words):
        cword = str(len(words.split()) - (0 if words.endswith(" ") else 1))
        env = {"_LIPSYNC_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": cword}
        return lipsync(env=env).stdout.split()

    assert complete("lipsync ren") == ["render", "render-many"]
    assert complete("lipsync render --precision ") == ["auto", "fp32", "fp16", "bf16", "int8"]
    assert complete("lipsync render --codec h") == ["h264", "hevc"]
