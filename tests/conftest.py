import os
from pathlib import Path

import pytest

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared reference folder next to the project; skips the test when it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared reference data not found at {SHARED_DIR}")
    return SHARED_DIR


@pytest.fixture
def golden_path(shared_dir):
    """golden_path("mel/x.npy") -> the file under shared/golden; skips the test when it is missing."""

    def path(relative: str) -> Path:
        file = shared_dir / "golden" / relative
        if not file.exists():
            pytest.skip(f"golden file {file} not found")
        return file

    return path


@pytest.fixture(autouse=True, scope="session")
def private_lipsync_cache(tmp_path_factory):
    """Records of verified packages (package/verified.py) go to a folder of this run, not the user's cache."""
    if "LIPSYNC_CACHE" not in os.environ:
        os.environ["LIPSYNC_CACHE"] = str(tmp_path_factory.mktemp("lipsync-cache"))


PROJECT_DIR = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = PROJECT_DIR / "examples"


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory) -> Path:
    """A synthetic package with cheap models and 12 full-size frames."""
    from lipsync_render.synth.avatar import synth_package

    return synth_package(tmp_path_factory.mktemp("packages") / "tiny", frames=12, tiny=True, seed=3)


@pytest.fixture(scope="session")
def short_wav(tmp_path_factory) -> Path:
    """The first 1.3 s of the example speech, 16 kHz mono."""
    import soundfile as sf

    samples, rate = sf.read(EXAMPLES_DIR / "hello.wav", dtype="int16")
    path = tmp_path_factory.mktemp("audio") / "short.wav"
    sf.write(path, samples[: int(1.3 * rate)], rate)
    return path
