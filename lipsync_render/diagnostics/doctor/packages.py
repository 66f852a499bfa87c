"""The doctor's disk and packages section: free space where packages and outputs go, every package found validated
in full, and the precision ``--precision auto`` picked for it here."""

from __future__ import annotations

import shutil
from pathlib import Path

from lipsync_render.diagnostics.doctor.check import Check

LOW_DISK_BYTES = 5 << 30


def package_search_dirs() -> list[Path]:
    """The existing folders ``--model NAME`` looks in, each once."""
    from lipsync_render.package.locate import package_search_dirs as search_dirs

    unique = {}
    for d in search_dirs():
        if d.is_dir():
            unique.setdefault(d.resolve(), d)
    return list(unique.values())


def check_disk(paths: list[Path]) -> list[Check]:
    """Free space of each distinct file system among ``paths`` (warn under 5 GiB)."""
    checks, seen = [], set()
    for path in paths:
        if not path.exists() or path.stat().st_dev in seen:
            continue
        seen.add(path.stat().st_dev)
        free = shutil.disk_usage(path).free
        detail = f"{free / (1 << 30):.1f} GiB free at {path}"
        if free < LOW_DISK_BYTES:
            checks.append(
                Check(
                    "disk",
                    "warn",
                    detail,
                    "free some space: a package is ~1.4 GiB per 500 frames and each minute of 720p video tens of MB",
                )
            )
        else:
            checks.append(Check("disk", "ok", detail))
    return checks


def find_packages(dirs: list[Path]) -> list[str]:
    """Every package directory (one holding a manifest) directly inside ``dirs``."""
    from lipsync_render.package.loader import MANIFEST

    found = []
    for directory in dirs:
        found += [
            str(p)
            for p in sorted(directory.iterdir())
            if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file()
        ]
    return found


def check_auto_precision(model: str) -> Check:
    """What ``--precision auto`` renders this package with here, from its cached measurement."""
    from lipsync_render.options import SessionOptions
    from lipsync_render.package import load_package
    from lipsync_render.planning.session_plan import plan_session

    choice = plan_session(load_package(model, verify_checksums=False), SessionOptions(), False).precision_choice
    name = f"auto precision {Path(model).name}"
    if choice is None:
        return Check(
            name, "ok", "not measured on this host yet: the first CPU render with --precision auto measures it"
        )
    others = ", ".join(
        f"{m.backend} {m.precision} "
        + (f"{m.psnr_db:.1f} dB {m.ms_per_frame:.1f} ms" if m.skipped is None else "skipped")
        for m in choice.measurements
    )
    return Check(name, "ok", f"{choice.describe()}; measured: {others}")


def check_packages(models: list[str]) -> list[Check]:
    """Full validation (checksums included) of each package."""
    from lipsync_render.package.loader import validate_package

    if not models:
        return [
            Check(
                "packages",
                "warn",
                "no model packages found in ./packages or $LIPSYNC_PACKAGES",
                "lipsync package synth demo (a synthetic one) or lipsync package build NAME --from DATASET",
            )
        ]
    checks = []
    for model in models:
        problems = validate_package(model)
        name = f"package {Path(model).name}"
        if not problems:
            checks.append(Check(name, "ok", f"valid, checksums match ({model})"))
            checks.append(check_auto_precision(model))
            continue
        more = f" ({len(problems) - 1} more)" if len(problems) > 1 else ""
        checks.append(
            Check(
                name,
                "fail",
                problems[0] + more,
                f"rebuild it (lipsync package build/synth) or restore it from a good copy; "
                f"'lipsync package validate {model}' lists every problem",
            )
        )
    return checks
