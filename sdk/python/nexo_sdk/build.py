"""Build a Python plugin into a Nexo component.

    python -m nexo_sdk.build PLUGIN_DIR -o OUT.wasm [--wit WIT_DIR]

Reads `PLUGIN_DIR/nexo-plugin.toml` (`id`, `version`, `kind` = connector or
mapper), runs componentize-py on `PLUGIN_DIR/app.py` against the contract
(the copy of `wit/1.1.0` shipped inside this package by default) with the SDK and the plugin
folder on the Python path, then appends the `nexo-sdk` custom section
(`sdk=python-X;wit=1.1.0;plugin=ID;version=V`) that `nexo plugin inspect`,
`pack` and the install summary show.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from . import WIT_VERSION, __version__

SDK_DIR = Path(__file__).resolve().parent.parent
WORLDS = {"connector": "connector", "mapper": "mapper"}
INSTALL_HINT = "run `cargo xtask setup` (it installs componentize-py==0.25.1 into target/py)"


class BuildError(Exception):
    """A build that cannot go on; the message says what to do."""


@dataclass(frozen=True)
class Manifest:
    id: str
    version: str
    kind: str


def read_manifest(plugin_dir: Path) -> Manifest:
    path = plugin_dir / "nexo-plugin.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BuildError(f"{path} is missing: a plugin folder needs a nexo-plugin.toml with id, version and kind") from None
    except tomllib.TOMLDecodeError as e:
        raise BuildError(f"{path} is not valid TOML: {e}") from None
    missing = [k for k in ("id", "version", "kind") if not isinstance(data.get(k), str)]
    if missing:
        raise BuildError(f"{path} lacks {', '.join(missing)} (strings)")
    if data["kind"] not in WORLDS:
        raise BuildError(f"{path}: kind is {data['kind']!r}; it must be \"connector\" or \"mapper\"")
    return Manifest(data["id"], data["version"], data["kind"])


def default_wit_dir() -> Path:
    """`$NEXO_WIT_DIR`, else the contract shipped inside the package (a copy
    of Nexo's `wit/<WIT_VERSION>/`, checked against it by Nexo's tests)."""
    env = os.environ.get("NEXO_WIT_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "wit" / WIT_VERSION


def componentize_py() -> str:
    beside = Path(sys.executable).parent / "componentize-py"
    if beside.is_file():
        return str(beside)
    found = shutil.which("componentize-py")
    if found is None:
        raise BuildError(f"componentize-py is not installed next to {sys.executable} nor on PATH; {INSTALL_HINT}")
    return found


def leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def custom_section(name: str, data: bytes) -> bytes:
    """A WebAssembly custom section (id 0): size, name, then the data."""
    encoded = name.encode()
    body = leb128(len(encoded)) + encoded + data
    return b"\x00" + leb128(len(body)) + body


def sdk_section(manifest: Manifest) -> bytes:
    text = f"sdk=python-{__version__};wit={WIT_VERSION};plugin={manifest.id};version={manifest.version}"
    return custom_section("nexo-sdk", text.encode())


def build(plugin_dir: Path, out: Path, wit_dir: Path | None = None) -> Path:
    plugin_dir = plugin_dir.resolve()
    manifest = read_manifest(plugin_dir)
    if not (plugin_dir / "app.py").is_file():
        raise BuildError(f"{plugin_dir / 'app.py'} is missing: it must export `Operations` (a connector) or `Mapping` (a mapper)")
    wit = (wit_dir or default_wit_dir()).resolve()
    if not (wit / "nexo.wit").is_file():
        raise BuildError(f"the contract {wit / 'nexo.wit'} is missing; pass --wit DIR (the wit/{WIT_VERSION} folder of Nexo)")
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    with tempfile.TemporaryDirectory(prefix="nexo-py-build-") as staging:
        # Build from a copy: only what ships (no tests, no bytecode caches),
        # and the build's own bytecode lands there, not in the sources.
        app_dir = Path(staging) / "app"
        sdk_dir = Path(staging) / "sdk"
        skip = shutil.ignore_patterns("__pycache__", "*.pyc", "tests", "*.wasm")
        shutil.copytree(plugin_dir, app_dir, ignore=skip)
        # The contract copy is build input, not code the component runs.
        sdk_skip = shutil.ignore_patterns("__pycache__", "*.pyc", "tests", "*.wasm", "wit")
        shutil.copytree(SDK_DIR / "nexo_sdk", sdk_dir / "nexo_sdk", ignore=sdk_skip)
        cmd = [
            componentize_py(), "-d", str(wit), "-w", WORLDS[manifest.kind],
            "componentize", "app", "-p", str(app_dir), "-p", str(sdk_dir), "-o", str(tmp),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(
            f"componentize-py failed for {plugin_dir} ({manifest.kind} {manifest.id}):\n{done.stderr.strip() or done.stdout.strip()}"
        )
    with tmp.open("ab") as f:
        f.write(sdk_section(manifest))
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nexo_sdk.build", description="Build a Python plugin into a Nexo component.")
    parser.add_argument("plugin_dir", type=Path, help="folder with app.py and nexo-plugin.toml")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the .wasm to write")
    parser.add_argument("--wit", type=Path, default=None, help=f"the contract folder (default: the copy of wit/{WIT_VERSION} in this package)")
    args = parser.parse_args(argv)
    try:
        out = build(args.plugin_dir, args.output, args.wit)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"built {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
