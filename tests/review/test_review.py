"""lipsync review: the sync measure, the page's content, and the page in headless Chromium (Debian's chromium)."""

import csv
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lipsync_render.cli.app import app
from lipsync_render.options import SessionOptions
from lipsync_render.rendering.renderer import Renderer
from lipsync_render.review import review_outputs
from lipsync_render.review.signals import best_lag

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
runner = CliRunner()


def swap_audio():
    spec = importlib.util.spec_from_file_location("swap_audio", EXAMPLES_DIR / "swap_audio.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.swap_audio


def test_best_lag_finds_a_known_shift():
    rng = np.random.default_rng(0)
    level = np.convolve(rng.random(200), np.ones(4) / 4, "same")
    motion = np.concatenate([np.zeros(3), level[:-3]]) * 30  # the mouth moves 3 frames after the sound
    sync = best_lag(motion, level)
    assert sync.lag == 3 and sync.r > 0.99 and sync.flagged
    assert best_lag(level, level).lag == 0 and not best_lag(level, level).flagged
    assert best_lag(np.zeros(50), level).r is None and best_lag(np.zeros(50), level).flagged


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """The demo render of examples/hello.wav, the same video with examples/pauses.wav as its audio, and a
    file that is no video."""
    from lipsync_render.synth.avatar import synth_package

    folder = tmp_path_factory.mktemp("review")
    demo = synth_package(folder / "demo", frames=100, weights="constructed")
    with Renderer(demo, SessionOptions(batch_size=8, workers=0)) as renderer:
        renderer.render(EXAMPLES_DIR / "hello.wav", folder / "hello.mp4")
    swap_audio()(str(folder / "hello.mp4"), str(EXAMPLES_DIR / "pauses.wav"), str(folder / "swapped.mp4"))
    (folder / "broken.mp4").write_bytes(b"not a video")
    return folder, demo


@pytest.fixture(scope="module")
def page(outputs):
    folder, demo = outputs
    reviews = review_outputs([folder / n for n in ("hello.mp4", "swapped.mp4", "broken.mp4")], folder / "r.html", demo)
    return folder / "r.html", {r.path.name: r for r in reviews}


def test_demo_is_in_sync_and_the_swapped_audio_is_flagged(page):
    _, reviews = page
    demo, swapped, broken = reviews["hello.mp4"], reviews["swapped.mp4"], reviews["broken.mp4"]
    assert demo.sync.lag == 0 and demo.sync.r > 0.8 and not demo.flagged  # measured: lag 0, r 0.86
    assert swapped.flagged and (swapped.sync.r < 0.5 or abs(swapped.sync.lag) > 1)  # measured: lag 2, r 0.21
    assert broken.flagged and "cannot be read as a video" in broken.problem
    assert demo.frames == 142 and demo.duration == 5.68 and demo.poster


def test_page_is_self_contained_and_lists_flagged_first(page):
    text = page[0].read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text) and "@import" not in text and "url(" not in text
    names = re.findall(r'data-name="([^"]+)"', text)
    assert names[-1] == "hello.mp4" and set(names) == {"hello.mp4", "swapped.mp4", "broken.mp4"}
    assert text.count("Needs a look") + text.count("Out of sync") == 2 and "In sync: lag +0 frames, r 0.8" in text


def chromium(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def console_messages(stderr: str) -> list[str]:
    """The page's console output as Chromium logs it with --enable-logging=stderr: lines with ':CONSOLE'."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_console_check_sees_errors(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>missing();</script></body></html>")
    assert any("Uncaught" in line for line in console_messages(chromium("--dump-dom", bad.as_uri()).stderr))


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_page_in_headless_chromium(page, tmp_path):
    path, _ = page
    result = chromium("--dump-dom", path.as_uri())
    assert result.returncode == 0 and console_messages(result.stderr) == []
    dom = result.stdout
    assert 'data-ready="1"' in dom  # the script ran to its end
    assert len(re.findall(r'<li class="card', dom)) == 3
    assert re.search(r'data-flag="1" data-name="swapped.mp4"', dom)
    assert re.search(r'data-flag="0" data-name="hello.mp4"', dom)
    shot = tmp_path / "shot.png"
    chromium("--hide-scrollbars", "--window-size=900,900", f"--screenshot={shot}", path.as_uri())
    assert shot.stat().st_size > 10_000


def test_cli_review_and_hostile_arguments(outputs, tmp_path):
    folder, demo = outputs
    result = runner.invoke(
        app, ["review", str(folder / "hello.mp4"), "--model", str(demo), "-o", str(tmp_path / "p.html")]
    )
    assert result.exit_code == 0 and "1 output(s), 0 flagged" in result.stdout
    result = runner.invoke(app, ["review", str(folder / "hello.mp4"), "-o", str(tmp_path / "p.txt")])
    assert result.exit_code == 2 and ".html" in result.stderr
    result = runner.invoke(
        app, ["review", str(folder / "hello.mp4"), "-o", str(folder / "hello.mp4.html"), "-m", "nope"]
    )
    assert result.exit_code == 0 and "1 flagged" in result.stdout  # its package cannot be loaded: flagged, not fatal
    result = runner.invoke(app, ["review", str(folder / "hello.mp4"), "-o", str(tmp_path)])
    assert result.exit_code == 2
    target = tmp_path / "dir.html"
    target.mkdir()
    result = runner.invoke(app, ["review", str(folder / "hello.mp4"), "-o", str(target)])
    assert result.exit_code == 6 and "Traceback" not in result.output


def test_render_many_writes_a_review_page(tiny_package, short_wav, tmp_path):
    manifest = tmp_path / "jobs.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows([["audio", "model", "output", "workers"], [short_wav, tiny_package, "a.mp4", 0]])
    result = runner.invoke(app, ["render-many", str(manifest), "--quiet", "--review", str(tmp_path / "review.html")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "review.html").read_text()
    assert 'data-name="a.mp4"' in text and "onnxruntime" in text and "fp32" in text and "fps (" in text
