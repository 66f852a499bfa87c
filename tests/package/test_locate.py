"""One rule for package name -> directory: a path as given, a bare name under ./packages (new) or searched."""

from pathlib import Path

import pytest

from lipsync_render.errors import PackageError
from lipsync_render.package.locate import names_a_path, package_destination, resolve_package_path


def test_a_path_is_told_from_a_name():
    assert names_a_path("out/demo") and names_a_path("./demo") and names_a_path(".hidden")
    assert not names_a_path("demo") and not names_a_path("demo-1.2")


def test_a_new_package_goes_under_packages_unless_a_path_is_given():
    assert package_destination("demo") == Path("packages") / "demo"
    assert package_destination("demo", Path("elsewhere")) == Path("elsewhere") / "demo"
    assert package_destination("out/demo", Path("elsewhere")) == Path("out/demo")


def test_a_bare_name_that_is_a_directory_here_is_that_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()
    assert resolve_package_path("demo") == Path("demo")
    with pytest.raises(PackageError, match="does not exist"):
        resolve_package_path("./missing")
