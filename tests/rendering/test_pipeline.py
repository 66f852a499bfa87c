"""End-to-end renders with the tiny package: output contract, bit-exact geometry, determinism, failures."""

import os
import signal
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import psutil
import pytest

from lipsync_render.contract import AUDIO_ENCODER
from lipsync_render.errors import LipsyncError, RenderError
from lipsync_render.media.audio import load_audio
from lipsync_render.media.features import audio_features
from lipsync_render.media.video import probe, read_frames_bgr
from lipsync_render.model_input import crop_328, prediction_to_uint8, visual_input
from lipsync_render.options import RenderOptions, SessionOptions
from lipsync_render.package import load_package
from lipsync_render.rendering.frame_order import frame_schedule
from lipsync_render.rendering.geometry import composite_frame
from lipsync_render.rendering.renderer import Renderer
from lipsync_render.runtimes.ort.runner import OrtModel


def reference_pingpong(count, total):
    """§7 as the reference loop writes it."""
    last, stride, idx, out = total - 1, 0, 0, []
    for _ in range(count):
        if idx > last - 1:
            stride = -1
        if idx < 1:
            stride = 1
        idx += stride
        out.append(idx)
    return out


@pytest.mark.parametrize("total", [2, 5, 523])
def test_pingpong_matches_reference_loop(total):
    assert frame_schedule(1500, total).tolist() == reference_pingpong(1500, total)


def test_forward_loop_and_start_frame():
    assert frame_schedule(7, 5, start=3, loop="forward").tolist() == [3, 4, 0, 1, 2, 3, 4]
    assert frame_schedule(4, 5, start=2).tolist() == [3, 4, 3, 2]
    assert frame_schedule(3, 1).tolist() == [0, 0, 0]


@pytest.fixture(scope="module")
def rendered(tiny_package, short_wav, tmp_path_factory):
    """One render with frame PNGs, batch 4 so the last batch (33 = 8*4 + 1) is padded."""
    out = tmp_path_factory.mktemp("render")
    frames = RenderOptions(frames_dir=out / "frames", frames_format="png")
    with Renderer(tiny_package, SessionOptions(batch_size=4, workers=1, precision="fp32")) as renderer:
        result = renderer.render(short_wav, out / "short.mp4", frames)
    return result, out


def test_output_contract(rendered):
    result, out = rendered
    assert result.status == "ok" and result.frames == 33  # ceil(1.3 s * 25)
    info = probe(out / "short.mp4")
    assert (info.video_codec, info.pix_fmt, info.width, info.height) == ("h264", "yuv420p", 1280, 720)
    assert info.fps == 25 and info.frames == 33
    assert info.audio_codec == "aac" and info.audio_rate == 16000
    assert abs(info.audio_duration - info.video_duration) <= 0.04
    head = (out / "short.mp4").read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))
    assert set(result.seconds) >= {"audio", "inference", "compositing", "encoding", "total"}
    assert not [p for p in out.iterdir() if "partial" in p.name]


def test_frames_are_bit_exact_against_plain_reference(rendered, tiny_package, short_wav):
    """Every composited frame equals a one-frame-at-a-time transcription of §3-§7 on uint8 frames."""
    _, out = rendered
    package = load_package(tiny_package)
    session = ort.InferenceSession(str(package.unet_path), providers=["CPUExecutionProvider"])
    encoder = ort.InferenceSession(str(package.audio_encoder_path), providers=["CPUExecutionProvider"])
    table = audio_features(load_audio(short_wav), OrtModel(encoder, AUDIO_ENCODER, 64))
    schedule = reference_pingpong(33, package.frame_count)
    for k in range(33):
        rows = [table[r] if 0 <= r < len(table) else np.zeros(512, np.float32) for r in range(k - 8, k + 8)]
        audio = np.stack(rows).reshape(1, 32, 16, 16)
        frame, rect = np.asarray(package.frames[schedule[k]]), package.rects[schedule[k]]
        visual = visual_input(crop_328(frame, rect))[None]
        output = session.run(None, {"input": visual, "audio": audio})[0]
        expected = composite_frame(frame, rect, prediction_to_uint8(output)[0])
        written = cv2.imread(str(out / "frames" / f"{k:06d}.png"))
        assert np.array_equal(written, expected), f"frame {k} differs"
        x1, y1, x2, y2 = rect
        outside = np.ones(frame.shape[:2], bool)
        outside[y1:y2, x1:x2] = False
        assert np.array_equal(written[outside], frame[outside])


def test_two_renders_decode_identically(rendered, tiny_package, short_wav, tmp_path):
    _, out = rendered
    with Renderer(tiny_package, SessionOptions(batch_size=4, workers=0)) as renderer:
        renderer.render(short_wav, tmp_path / "again.mp4")
    for a, b in zip(read_frames_bgr(out / "short.mp4"), read_frames_bgr(tmp_path / "again.mp4"), strict=True):
        assert np.array_equal(a, b)


def test_batch_size_below_one_is_refused(tiny_package):
    with pytest.raises(LipsyncError, match="Batch size must be at least 1"):
        Renderer(tiny_package, SessionOptions(batch_size=0))


def test_dead_worker_fails_the_render_without_output(tiny_package, short_wav, tmp_path):
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with Renderer(tiny_package, SessionOptions(batch_size=4, workers=1)) as renderer:
        started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        spawned = [p for p in started if "spawn_main" in " ".join(p.cmdline())]  # not the resource tracker
        workers = [p for p in spawned if p.pid != renderer.encoder_process.process.pid]
        assert len(workers) == 1, "one compositing process besides the video encoder"

        def kill_worker(done, total):
            if done == 3:
                workers[0].kill()

        with pytest.raises(RenderError, match="compositing worker process died"):
            renderer.render(short_wav, tmp_path / "dead.mp4", on_progress=kill_worker)
        assert list(tmp_path.iterdir()) == []
        result = renderer.render(short_wav, tmp_path / "again.mp4")  # a fresh pool takes over
    assert result.frames == 33 and probe(tmp_path / "again.mp4").frames == 33


def test_output_dir_missing(tiny_package, short_wav, tmp_path):
    with Renderer(tiny_package, SessionOptions(workers=0)) as renderer:
        with pytest.raises(RenderError, match="does not exist"):
            renderer.render(short_wav, tmp_path / "nowhere" / "x.mp4")


def test_package_features_drive_the_render(tiny_package, short_wav, tmp_path):
    """--features package reads the table from aud_ave.npy; missing features are a clear error."""
    with Renderer(tiny_package, SessionOptions(workers=0)) as renderer:
        with pytest.raises(LipsyncError, match="no pre-extracted features"):
            renderer.render(short_wav, tmp_path / "x.mp4", RenderOptions(features="package"))


def test_dead_encoder_fails_the_render_and_the_next_render_recovers(tiny_package, short_wav, tmp_path):
    with Renderer(tiny_package, SessionOptions(batch_size=4, workers=0)) as renderer:

        def kill_encoder(done, total):
            if done == 3:
                os.kill(renderer.encoder_process.process.pid, signal.SIGKILL)

        with pytest.raises(RenderError, match="video encoder process died"):
            renderer.render(short_wav, tmp_path / "dead.mp4", on_progress=kill_encoder)
        assert list(tmp_path.iterdir()) == []
        result = renderer.render(short_wav, tmp_path / "again.mp4")
    assert result.frames == 33 and probe(tmp_path / "again.mp4").frames == 33


@pytest.mark.parametrize("gop, spacing", [(2.0, 50), (0.4, 10)])
def test_keyframes_come_every_gop_seconds(tiny_package, short_wav, tmp_path, gop, spacing):
    import av

    with Renderer(tiny_package, SessionOptions(workers=0)) as renderer:
        renderer.render(short_wav, tmp_path / "k.mp4", RenderOptions(gop=gop))
    with av.open(str(tmp_path / "k.mp4")) as container:
        keyframes = [i for i, packet in enumerate(container.demux(video=0)) if packet.is_keyframe]
    assert keyframes[:2] == [0, spacing] or (keyframes == [0] and spacing >= 33)


def test_decoded_output_shows_the_package_colours_outside_the_rect(tiny_package, short_wav, tmp_path):
    """Played as the BT.709 tags say, background pixels come back as they are in the package, within 2 levels
    (lossless x264, so what is measured is the colour conversion and 4:2:0 chroma; pixels near the face
    and at sharp colour edges share chroma with their neighbours and are left out; 8-bit YUV itself rounds a
    saturated pixel by up to 3 levels, hence the 99.9th percentile)."""
    package = load_package(tiny_package)
    with Renderer(tiny_package, SessionOptions(workers=0, precision="fp32")) as renderer:
        result = renderer.render(short_wav, tmp_path / "c.mp4", RenderOptions(crf=0))
    schedule = frame_schedule(result.frames, package.frame_count)
    for number, decoded in enumerate(read_frames_bgr(tmp_path / "c.mp4")):
        source = package.frames[schedule[number]]
        x1, y1, x2, y2 = package.rects[schedule[number]]
        flat = cv2.morphologyEx(source, cv2.MORPH_GRADIENT, np.ones((5, 5), np.uint8)).max(axis=2) <= 8
        flat[max(0, y1 - 8) : y2 + 8, max(0, x1 - 8) : x2 + 8] = False
        difference = decoded.astype(int)[flat] - source[flat]
        assert np.percentile(np.abs(difference), 99.9) <= 2 and np.abs(difference).mean() < 1


def test_output_size_scales_the_finished_frames(tiny_package, short_wav, tmp_path):
    options = RenderOptions(frames_dir=tmp_path / "frames", frames_format="png")
    with Renderer(tiny_package, SessionOptions(workers=1, size="640x360")) as renderer:
        renderer.render(short_wav, tmp_path / "small.mp4", options)
    info = probe(tmp_path / "small.mp4")
    assert (info.width, info.height, info.frames) == (640, 360, 33)
    package = load_package(tiny_package)
    first = cv2.imread(str(tmp_path / "frames" / "000000.png"))
    x1, y1, x2, y2 = package.rects[frame_schedule(1, package.frame_count)[0]]
    expected = cv2.resize(np.asarray(package.frames[1]), (640, 360), interpolation=cv2.INTER_AREA)
    outside = np.ones((360, 640), bool)
    outside[y1 // 2 - 2 : y2 // 2 + 2, x1 // 2 - 2 : x2 // 2 + 2] = False
    assert first.shape == (360, 640, 3) and np.array_equal(first[outside], expected[outside])


def test_hevc_output(tiny_package, short_wav, tmp_path):
    with Renderer(tiny_package, SessionOptions(workers=0, codec="hevc")) as renderer:
        result = renderer.render(short_wav, tmp_path / "h.mp4")
    assert result.video_encoder == "libx265"
    assert probe(tmp_path / "h.mp4").video_codec == "hevc"


# --- --silence idle and --blend feather ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def paused_wav(short_wav, tmp_path_factory):
    """0.8 s of speech, 1.0 s of digital silence, 0.5 s of speech: 58 frames."""
    import soundfile as sf

    speech, rate = sf.read(short_wav, dtype="int16")
    path = tmp_path_factory.mktemp("paused") / "paused.wav"
    sf.write(path, np.concatenate([speech[: 8 * rate // 10], np.zeros(rate, np.int16), speech[: rate // 2]]), rate)
    return path


def render_counting_unet(package, audio, out_dir, **options):
    """Render with PNG frames; returns the result, the frames and how many samples went through the UNet."""
    runs = []
    out_dir.mkdir()
    with Renderer(package, SessionOptions(batch_size=4, workers=options.pop("workers", 0))) as renderer:
        unet_run = renderer.unet.run
        renderer.unet.run = lambda visual, audio: runs.append(len(visual)) or unet_run(visual, audio)
        frames_dir = out_dir / "frames"
        result = renderer.render(
            audio, out_dir / "out.mp4", RenderOptions(frames_dir=frames_dir, frames_format="png", **options)
        )
    frames = [cv2.imread(str(frames_dir / f"{k:06d}.png")) for k in range(result.frames)]
    assert probe(out_dir / "out.mp4").frames == result.frames
    return result, frames, sum(runs)


def still_weights_of(audio):
    from lipsync_render.media.audio import AudioStream
    from lipsync_render.media.features import frame_count_for_audio
    from lipsync_render.rendering.silence import stream_still_weights

    stream = AudioStream(audio)
    return np.array(list(stream_still_weights(stream.blocks(), frame_count_for_audio(stream.sample_count))))


@pytest.mark.parametrize("workers", [0, 1])
def test_idle_frames_are_the_package_frames_and_skip_the_unet(tiny_package, paused_wav, tmp_path, workers):
    from lipsync_render.rendering.geometry import cross_fade

    keep, keep_frames, keep_runs = render_counting_unet(tiny_package, paused_wav, tmp_path / "keep")
    idle, idle_frames, idle_runs = render_counting_unet(
        tiny_package, paused_wav, tmp_path / "idle", silence="idle", workers=workers
    )
    weights = still_weights_of(paused_wav)
    idle_count = int((weights == 1).sum())
    assert idle.frames == keep.frames == len(weights) == 58 and idle_count >= 8
    assert (keep_runs, idle_runs, idle.idle_frames, keep.idle_frames) == (58, 58 - idle_count, idle_count, 0)
    package = load_package(tiny_package)
    schedule = frame_schedule(58, package.frame_count)
    for k, weight in enumerate(weights):
        still = np.asarray(package.frames[schedule[k]])
        if weight == 1:
            assert np.array_equal(idle_frames[k], still), f"idle frame {k} is not the package frame"
        elif weight == 0:
            assert np.array_equal(idle_frames[k], keep_frames[k]), f"frame {k} is not the rendered frame"
        else:
            expected = cross_fade(keep_frames[k], still, weight, np.empty_like(still))
            assert np.array_equal(idle_frames[k], expected), f"fade frame {k}"


def test_idle_on_silent_and_on_unbroken_audio(tiny_package, tmp_path):
    import soundfile as sf

    silent, tone = tmp_path / "silent.wav", tmp_path / "tone.wav"
    sf.write(silent, np.zeros(16000, np.int16), 16000)
    sf.write(tone, (8000 * np.sin(np.arange(16000) * 0.09)).astype(np.int16), 16000)
    result, frames, runs = render_counting_unet(tiny_package, silent, tmp_path / "s", silence="idle")
    package = load_package(tiny_package)
    schedule = frame_schedule(25, package.frame_count)
    assert (result.frames, result.idle_frames, runs) == (25, 25, 0)
    assert "inference" not in result.seconds
    assert all(np.array_equal(frame, package.frames[schedule[k]]) for k, frame in enumerate(frames))
    idle, idle_frames, idle_runs = render_counting_unet(tiny_package, tone, tmp_path / "t", silence="idle")
    _, keep_frames, _ = render_counting_unet(tiny_package, tone, tmp_path / "k")
    assert (idle.idle_frames, idle_runs) == (0, 25)
    assert all(np.array_equal(a, b) for a, b in zip(idle_frames, keep_frames, strict=True))


def test_idle_with_package_features(tiny_package, paused_wav, tmp_path):
    """--features package decodes no audio for the UNet, yet --silence idle still reads it for its levels."""
    import json
    import shutil

    package = Path(shutil.copytree(tiny_package, tmp_path / "with-features"))
    encoder_path = load_package(tiny_package).audio_encoder_path
    encoder = ort.InferenceSession(str(encoder_path), providers=["CPUExecutionProvider"])
    np.save(package / "aud_ave.npy", audio_features(load_audio(paused_wav), OrtModel(encoder, AUDIO_ENCODER, 64)))
    manifest = json.loads((package / "package.json").read_text())
    manifest["files"]["features"] = "aud_ave.npy"
    (package / "package.json").write_text(json.dumps(manifest))
    from_audio, audio_frames, _ = render_counting_unet(tiny_package, paused_wav, tmp_path / "a", silence="idle")
    from_package, package_frames, _ = render_counting_unet(
        package, paused_wav, tmp_path / "p", silence="idle", features="package"
    )
    assert from_package.idle_frames == from_audio.idle_frames > 0
    assert all(np.array_equal(a, b) for a, b in zip(package_frames, audio_frames, strict=True))


def test_feather_changes_only_pixels_inside_the_rectangles(tiny_package, short_wav, tmp_path):
    _, hard, _ = render_counting_unet(tiny_package, short_wav, tmp_path / "hard")
    _, soft, _ = render_counting_unet(tiny_package, short_wav, tmp_path / "soft", blend="feather:8")
    package = load_package(tiny_package)
    schedule = frame_schedule(len(hard), package.frame_count)
    changed = 0
    for k, (a, b) in enumerate(zip(hard, soft, strict=True)):
        x1, y1, x2, y2 = package.rects[schedule[k]]
        outside = np.ones(a.shape[:2], bool)
        outside[y1:y2, x1:x2] = False
        assert np.array_equal(b[outside], np.asarray(package.frames[schedule[k]])[outside])
        changed += int((a != b).any())
    assert changed == len(hard)
