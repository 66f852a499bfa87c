"""The Python API as the README shows it, pasted into a plain script and run in a fresh interpreter."""

import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def readme_snippet() -> str:
    text = (PROJECT / "README.md").read_text(encoding="utf-8")
    start = text.index("```python\nfrom pathlib import Path\n\nfrom lipsync_render import Renderer")
    return text[start + len("```python\n") : text.index("```", start + 9)]


def test_the_readme_snippet_runs_as_a_plain_script(tiny_package, tmp_path):
    (tmp_path / "packages").mkdir()
    (tmp_path / "packages" / "demo").symlink_to(tiny_package)
    (tmp_path / "examples").symlink_to(PROJECT / "examples")
    (tmp_path / "out").mkdir()
    (tmp_path / "snippet.py").write_text(readme_snippet())
    result = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"one.mp4", "hello.mp4", "pauses.mp4"}
    assert len(result.stdout.split()) == 2 and "Traceback" not in result.stderr


def test_render_is_the_function_and_the_names_are_public():
    import lipsync_render

    assert callable(lipsync_render.render) and lipsync_render.render.__module__.endswith("renderer")
    assert {"Renderer", "RenderOptions", "SessionOptions", "RenderResult"} <= set(lipsync_render.__all__)


def test_a_script_without_a_main_guard_fails_at_once_in_one_sentence(tiny_package, tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(
        f"from lipsync_render import Renderer, SessionOptions\n"
        f"renderer = Renderer({str(tiny_package)!r}, SessionOptions(workers=1))\n"
        f"renderer.close()\n"
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert 'under `if __name__ == "__main__":`' in result.stderr
    assert result.stderr.count("Traceback") <= 1 and "leaked shared_memory" not in result.stderr
