"""Reading over http from a server on 127.0.0.1 (a thread of this process), and a filesystem not installed."""

import functools
import importlib.util
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lipsync_render.errors import AudioError, OptionError
from lipsync_render.package.loader import load_package
from lipsync_render.storage import exists, fetch_package, fetch_to_local
from lipsync_render.storage import package_cache as cache
from lipsync_render.synth.avatar import synth_package


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    pytest.importorskip("aiohttp", reason="fsspec's http filesystem needs aiohttp")
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_audio_and_package_over_http(served, tmp_path, monkeypatch):
    root, base = served
    (root / "voice one.wav").write_bytes(b"RIFF" + b"\0" * 60)
    fetched = fetch_to_local(f"{base}/voice%20one.wav", tmp_path / "in")
    assert fetched.read_bytes()[:4] == b"RIFF" and exists(f"{base}/voice%20one.wav")
    with pytest.raises(AudioError, match=r"^http://127\.0\.0\.1:\d+/none\.wav does not exist\.$"):
        fetch_to_local(f"{base}/none.wav", tmp_path / "in", error=AudioError)
    synth_package(root / "pkg", frames=2, size=(256, 192), tiny=True, seed=5)
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    with fetch_package(f"{base}/pkg") as lease:
        assert load_package(lease.path).frame_count == 2


@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs is installed here")
def test_a_filesystem_not_installed_is_one_sentence():
    with pytest.raises(OptionError, match=r"gs:// URLs need the gcsfs package.*lipsync-render\[gcs\]"):
        exists("gs://bucket/key.wav")
