"""A PEP 517 build backend that makes the SDK's wheel with the standard
library only.

The toolchain `cargo xtask setup` installs (target/py) has pip and an old
setuptools but not the `wheel` package setuptools needs for a wheel, and
tests must not fetch anything. The SDK is one pure-Python package plus the
contract file, so the wheel is a zip of those files with the three
`.dist-info` files (METADATA, WHEEL, RECORD) the wheel format asks for:

    pip wheel --no-deps --no-build-isolation sdk/python -w DIR
"""

from __future__ import annotations

import base64
import hashlib
import tarfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "nexo_sdk"


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _files() -> list[Path]:
    """What ships: the package's modules and the contract, no tests or caches."""
    pkg = ROOT / PACKAGE
    keep = [p for p in pkg.rglob("*.py") if "__pycache__" not in p.parts]
    keep += list(pkg.glob("wit/*/*.wit"))
    return sorted(keep)


def _metadata(project: dict) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
        f"Summary: {project.get('description', '')}",
        f"Requires-Python: {project.get('requires-python', '>=3.11')}",
        f"License: {project.get('license', {}).get('text', '')}",
    ]
    for extra, reqs in project.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {r}; extra == "{extra}"' for r in reqs]
    readme = ROOT / project.get("readme", "README.md")
    body = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    lines.append("Description-Content-Type: text/markdown")
    return "\n".join(lines) + "\n\n" + body


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def get_requires_for_build_wheel(config_settings=None) -> list[str]:
    return []


def get_requires_for_build_sdist(config_settings=None) -> list[str]:
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None) -> str:
    project = _project()
    dist = project["name"].replace("-", "_")
    version = project["version"]
    info = f"{dist}-{version}.dist-info"
    name = f"{dist}-{version}-py3-none-any.whl"
    entries: list[tuple[str, bytes]] = [
        (p.relative_to(ROOT).as_posix(), p.read_bytes()) for p in _files()
    ]
    entries.append((f"{info}/METADATA", _metadata(project).encode()))
    wheel = "Wheel-Version: 1.0\nGenerator: nexo_wheel\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entries.append((f"{info}/WHEEL", wheel.encode()))
    record = "".join(f"{path},{_digest(data)},{len(data)}\n" for path, data in entries)
    record += f"{info}/RECORD,,\n"
    entries.append((f"{info}/RECORD", record.encode()))
    out = Path(wheel_directory) / name
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for path, data in entries:
            # A fixed date: the same sources give the same wheel.
            zi = zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    return name


def build_sdist(sdist_directory, config_settings=None) -> str:
    project = _project()
    base = f"{project['name'].replace('-', '_')}-{project['version']}"
    out = Path(sdist_directory) / f"{base}.tar.gz"
    extra = [ROOT / "pyproject.toml", ROOT / "README.md", *sorted((ROOT / "_backend").glob("*.py"))]
    with tarfile.open(out, "w:gz") as t:
        for p in [*extra, *_files()]:
            t.add(p, arcname=f"{base}/{p.relative_to(ROOT).as_posix()}")
    return out.name
