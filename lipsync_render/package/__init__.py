"""Model packages: the format and its loading (``loader``), finding one by name (``locate``), writing, building
from datasets, export, description."""

from lipsync_render.package.loader import (
    MANIFEST,
    Package,
    PackageReport,
    check_package,
    load_package,
    sha256_file,
    validate_package,
)
from lipsync_render.package.locate import (
    PACKAGES_ENV,
    package_destination,
    package_search_dirs,
    resolve_package_path,
)
from lipsync_render.package.writer import write_package

__all__ = [
    "MANIFEST",
    "PACKAGES_ENV",
    "Package",
    "PackageReport",
    "check_package",
    "load_package",
    "package_destination",
    "package_search_dirs",
    "resolve_package_path",
    "sha256_file",
    "validate_package",
    "write_package",
]
