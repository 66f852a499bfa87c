"""lipsync doctor: real provider probes, warnings (not failures) for a missing GPU, broken packages fail with a fix."""

import shutil
from collections import namedtuple

from typer.testing import CliRunner

from lipsync_render.cli.app import app
from lipsync_render.diagnostics import doctor
from lipsync_render.diagnostics.doctor import nvidia, packages, providers
from lipsync_render.runtimes.ort.sessions import CPU, CUDA, cuda_driver_present

runner = CliRunner()


def by_name(checks):
    return {check.name: check for check in checks}


def test_this_machine(tiny_package):
    checks = by_name(doctor.run_checks(models=[str(tiny_package)]))
    assert checks["provider cpu"].status == "ok"
    assert checks["encoder libx264"].status == "ok"
    assert checks["package tiny"].status == "ok"
    assert checks["onnxruntime"].status == "ok" and checks["pyav / ffmpeg"].status == "ok"
    assert any(name == "disk" for name in checks)
    if not cuda_driver_present():
        for name in ("nvidia driver", "provider cuda", "provider tensorrt", "encoder h264_nvenc", "cuda libraries"):
            assert checks[name].status == "warn", checks[name]
            assert checks[name].fix
    assert not [c for c in checks.values() if c.status == "fail"]


def test_tiny_model_runs_on_the_cpu_provider():
    assert providers.session_providers([CPU]) == ([CPU], None)


def test_silent_cuda_fallback_is_a_failure(monkeypatch):
    """Driver present, CUDA provider built in, but the session lands on the CPU: the GPU libraries are missing."""
    monkeypatch.setattr(providers, "available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(providers, "session_providers", lambda providers: ([CPU], None))
    check = providers.check_cuda_provider(driver=True)
    assert check.status == "fail" and "fell back to the CPU" in check.detail
    assert "onnxruntime-gpu[cuda,cudnn]" in check.fix


def test_missing_cuda_libraries_fail_only_with_a_driver(monkeypatch):
    monkeypatch.setattr(nvidia, "first_loadable", lambda names: None)
    assert nvidia.check_cuda_libraries(driver=False).status == "warn"
    check = nvidia.check_cuda_libraries(driver=True)
    assert check.status == "fail" and "libcudnn" in check.detail and check.fix


def test_low_disk_warns(monkeypatch, tmp_path):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(packages.shutil, "disk_usage", lambda path: usage(10 << 30, 9 << 30, 1 << 30))
    (check,) = packages.check_disk([tmp_path, tmp_path])
    assert check.status == "warn" and "1.0 GiB free" in check.detail and check.fix


def test_corrupted_package_fails_with_a_fix(tiny_package, tmp_path):
    broken = shutil.copytree(tiny_package, tmp_path / "broken")
    with open(broken / "unet.onnx", "ab") as f:
        f.write(b"\0")
    (check,) = packages.check_packages([str(broken)])
    assert check.status == "fail" and "does not match its checksum" in check.detail
    assert f"lipsync package validate {broken}" in check.fix


def test_packages_found_in_search_dirs(tiny_package, tmp_path):
    (tmp_path / "not-a-package").mkdir()
    shutil.copytree(tiny_package, tmp_path / "one")
    assert packages.find_packages([tmp_path]) == [str(tmp_path / "one")]
    assert packages.check_packages([])[0].status == "warn"


def test_cli_exit_codes(tiny_package, tmp_path):
    good = runner.invoke(app, ["doctor", "--model", str(tiny_package)])
    assert good.exit_code == 0, good.output
    assert "provider cpu" in good.stdout and "package tiny" in good.stdout

    broken = shutil.copytree(tiny_package, tmp_path / "broken")
    (broken / "crop_rects.json").write_text("[[0, 0, 10, 10]]")
    bad = runner.invoke(app, ["doctor", "--model", str(tiny_package), "--model", str(broken)])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    lines = bad.stdout.splitlines()
    failed = next(i for i, line in enumerate(lines) if line.startswith("fail") and "package broken" in line)
    assert lines[failed + 1].strip().startswith("fix: ")


def test_torch_line_says_whether_the_backend_can_run(monkeypatch):
    from lipsync_render.diagnostics.doctor import torch_check

    monkeypatch.setattr(torch_check.importlib.util, "find_spec", lambda name: None)
    assert "not installed" in torch_check.check_torch(driver=False).detail
    monkeypatch.setattr(torch_check.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(torch_check, "probe_torch", lambda: {"version": "2.9", "cuda": "13.0", "gpus": []})
    check = torch_check.check_torch(driver=True)
    assert check.status == "warn" and check.fix
    monkeypatch.setattr(torch_check, "probe_torch", lambda: {"version": "2.9", "cuda": "13.0", "gpus": ["NVIDIA H200"]})
    assert "NVIDIA H200" in torch_check.check_torch(driver=True).detail
