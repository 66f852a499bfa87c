"""The OpenVINO backend and the --precision auto choice."""

import shutil

import numpy as np
import pytest

from lipsync_render.contract import AUDIO_ENCODER, UNET
from lipsync_render.errors import DeviceError
from lipsync_render.options import SessionOptions
from lipsync_render.package import load_package
from lipsync_render.planning import precision_choice as choice
from lipsync_render.planning.precision_choice import Measurement, candidates, pick
from lipsync_render.planning.quality import psnr
from lipsync_render.runtimes import get_backend, openvino
from lipsync_render.runtimes.calibration import calibration_inputs

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def package(tiny_package):
    return load_package(tiny_package)


@pytest.fixture(scope="module")
def feeds(package):
    pairs = calibration_inputs(package, 4, seed=1)
    return np.concatenate([v for v, _ in pairs]), np.concatenate([a for _, a in pairs])


def load(package, contract=UNET, **options):
    return get_backend("openvino").load(package, contract, SessionOptions(device="cpu", **options))


def test_fp32_matches_onnx_runtime(package, feeds):
    reference = get_backend("onnxruntime").load(package, UNET, SessionOptions(device="cpu", precision="fp32"))
    model = load(package, precision="fp32", batch_size=3)
    np.testing.assert_allclose(model.run(*feeds), reference.run(*feeds), atol=1e-4)
    assert model.device == "cpu" and model.providers == ["OpenVINO CPU fp32"]


def test_audio_encoder_matches_onnx_runtime(package):
    windows = np.random.default_rng(0).uniform(-4, 4, (70, 1, 80, 16)).astype(np.float32)
    reference = get_backend("onnxruntime").load(package, AUDIO_ENCODER, SessionOptions(device="cpu"))
    np.testing.assert_allclose(load(package, AUDIO_ENCODER).run(windows), reference.run(windows), atol=1e-4)


def test_compiled_models_are_cached_in_the_package(package):
    load(package, precision="fp32")
    assert (package.root / "cache" / "openvino").is_dir()


def test_a_dynamic_batch_unet_runs_at_the_planned_batch_from_ir_written_once(package, feeds):
    first = load(package, precision="fp32", batch_size=2)
    assert first.model_batch == 2 and first.constant_shape  # static kernels; a short batch is padded
    (ir,) = (package.root / "cache" / "openvino").glob("*/unet.batch2.*.xml")
    written = ir.stat().st_mtime_ns, ir.with_suffix(".bin").stat().st_mtime_ns
    again = load(package, precision="fp32", batch_size=2)
    assert (ir.stat().st_mtime_ns, ir.with_suffix(".bin").stat().st_mtime_ns) == written  # reused, not rewritten
    np.testing.assert_allclose(again.run(*(x[:3] for x in feeds)), first.run(*(x[:3] for x in feeds)), atol=1e-5)


def test_a_rewritten_model_file_gets_its_own_ir(tiny_package, tmp_path):
    root = shutil.copytree(tiny_package, tmp_path / "pkg", ignore=shutil.ignore_patterns("cache"))
    load(load_package(root), precision="fp32")
    unet = root / "unet.onnx"
    unet.write_bytes(unet.read_bytes())  # same content and checksum, another file on disk
    load(load_package(root), precision="fp32")
    assert len(list((root / "cache" / "openvino").glob("*/unet.batch1.*.xml"))) == 2


def test_a_file_in_place_of_the_cache_folder_costs_only_the_cache(tiny_package, tmp_path, package, feeds, caplog):
    root = shutil.copytree(tiny_package, tmp_path / "pkg", ignore=shutil.ignore_patterns("cache"))
    copy = load_package(root)
    (root / "cache" / "openvino").mkdir(parents=True)
    (root / "cache" / "openvino" / copy.checksum[:16]).write_text("not a folder")
    with caplog.at_level("WARNING"):
        model = load(copy, precision="fp32")
    assert "cannot be used; compiling without a cache" in caplog.text
    assert model.model_batch is None  # the model as it is, at its dynamic batch
    np.testing.assert_allclose(model.run(*feeds), load(package, precision="fp32").run(*feeds), atol=1e-5)


def test_a_damaged_ir_in_the_cache_costs_only_speed(tiny_package, tmp_path, package, feeds, caplog):
    root = shutil.copytree(tiny_package, tmp_path / "pkg", ignore=shutil.ignore_patterns("cache"))
    load(load_package(root), precision="fp32")
    (ir,) = (root / "cache" / "openvino").glob("*/unet.batch1.*.xml")
    ir.write_text("<net><layers><layer")  # cut short
    with caplog.at_level("WARNING"):
        model = load(load_package(root), precision="fp32")
    assert "compiling unet.onnx as it is" in caplog.text
    np.testing.assert_allclose(model.run(*feeds), load(package, precision="fp32").run(*feeds), atol=1e-5)


def test_concurrent_first_loads_at_new_batches_succeed_and_keep_the_locale(package, feeds):
    import locale
    from concurrent.futures import ThreadPoolExecutor

    before = locale.setlocale(locale.LC_CTYPE)
    for batch in range(5, 11):
        with ThreadPoolExecutor(2) as pool:
            models = list(pool.map(lambda _, batch=batch: load(package, precision="fp32", batch_size=batch), range(2)))
        assert [m.model_batch for m in models] == [batch, batch]
    assert locale.setlocale(locale.LC_CTYPE) == before  # OpenVINO's cache may not leave the process in "C"
    folder = next((package.root / "cache" / "openvino").glob("*/unet.batch5.*.xml")).parent
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temporary left behind
    np.testing.assert_allclose(models[0].run(*feeds), models[1].run(*feeds), atol=1e-5)


@pytest.mark.skipif("BF16" not in openvino.cpu_capabilities(), reason="this CPU has no bf16")
def test_bf16_stays_close_to_fp32(package, feeds):
    reference = load(package, precision="fp32").run(*feeds)
    assert psnr(reference, load(package, precision="bf16").run(*feeds)) > 30


def test_bf16_is_refused_where_the_cpu_lacks_it(package, monkeypatch):
    monkeypatch.setattr(openvino, "supported_precisions", lambda: ("fp32", "int8"))
    with pytest.raises(DeviceError, match="bf16 needs AMX or AVX-512 BF16"):
        load(package, precision="bf16")


def test_a_gpu_request_is_refused(package):
    with pytest.raises(DeviceError, match="runs on the CPU"):
        get_backend("openvino").load(package, UNET, SessionOptions(device="cuda", precision="fp32"))


def test_onnx_runtime_refuses_bf16(package):
    with pytest.raises(DeviceError, match="--backend openvino"):
        get_backend("onnxruntime").load(package, UNET, SessionOptions(device="cpu", precision="bf16"))


def test_the_fastest_candidate_within_the_gate_wins():
    measurements = [
        Measurement("onnxruntime", "fp32", float("inf"), 70.0),
        Measurement("onnxruntime", "int8", 31.0, 25.0),  # fastest, but below 45 dB
        Measurement("openvino", "bf16", 52.6, 40.0),
        Measurement("openvino", "fp32", 120.0, 60.0),
        Measurement("openvino", "int8", skipped="not here"),
    ]
    assert (pick(measurements).backend, pick(measurements).precision) == ("openvino", "bf16")
    assert pick([Measurement("openvino", "int8", 20.0, 5.0)]).precision == "fp32"  # nothing passes: the reference
    near = [Measurement("onnxruntime", "fp32", float("inf"), 0.50), Measurement("openvino", "bf16", 60.0, 0.30)]
    assert pick(near).backend == "onnxruntime", "0.2 ms is noise on a tiny model: stay bit-exact"
    slightly = [Measurement("onnxruntime", "fp32", float("inf"), 70.0), Measurement("openvino", "bf16", 60.0, 65.0)]
    assert pick(slightly).backend == "onnxruntime", "under 10% faster is not worth leaving the reference"


def test_candidates_start_with_the_reference():
    assert candidates("auto")[0] == ("onnxruntime", "fp32") and ("openvino", "bf16") in candidates("auto")
    assert candidates("openvino") == [
        ("onnxruntime", "fp32"),
        ("openvino", "fp32"),
        ("openvino", "bf16"),
        ("openvino", "int8"),
    ]
    assert candidates("onnxruntime") == [("onnxruntime", "fp32"), ("onnxruntime", "int8")]


def test_the_choice_is_measured_once_and_cached(tiny_package, tmp_path, monkeypatch):
    package = load_package(shutil.copytree(tiny_package, tmp_path / "pkg", ignore=shutil.ignore_patterns("cache")))
    options = SessionOptions(threads=1)
    first = choice.choose_precision(package, options)
    assert not first.cached and {(m.backend, m.precision) for m in first.measurements} >= {("onnxruntime", "fp32")}
    assert first.psnr_db is None or first.psnr_db >= choice.GATE_DB
    monkeypatch.setattr(choice, "measure", lambda *args: pytest.fail("measured again"))
    again = choice.choose_precision(package, options)
    assert again.cached and (again.backend, again.precision) == (first.backend, first.precision)


def test_backend_versions_in_the_choice_key_are_the_installed_distributions():
    from importlib import metadata

    assert choice._installed_version("openvino") == metadata.version("openvino")
    installed = [
        d for d in choice.DISTRIBUTIONS["onnxruntime"] if d in {x.metadata["Name"] for x in metadata.distributions()}
    ]
    assert choice._installed_version("onnxruntime") == metadata.version(installed[0])
    assert choice._installed_version("no_such_backend_package") == "absent"
