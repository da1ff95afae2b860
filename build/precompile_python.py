"""Compile Pyodide's standard library and the numpy wheel to bytecode, so the browser does not compile them.

Pyodide 0.27.7 ships both as Python source: every visit, starting Python and `import numpy` compile some 300
modules from source, about 2 s of CPU on a 2-core machine (issue 9). This script replaces each `.py` in
node_modules/pyodide/python_stdlib.zip and in the vendored numpy wheel (build/vendor/) by its `.pyc`, compiled
by Pyodide's own CPython (run in node, so the bytecode is exactly the runtime's), as unchecked hash-based pycs
(PEP 552: no timestamps, nothing to validate at import). Other members are copied unchanged; the wheel's RECORD
lists the new members. The outputs and a record of their inputs go to build/vendor/pyc/, which is committed:
build_site.py ships them after checking that their inputs are still the current ones.

Usage (repository root, after `npm ci`): python build/precompile_python.py
Needs node; standard-library Python otherwise.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYODIDE = ROOT / "node_modules" / "pyodide"
VENDOR_DIR = ROOT / "build" / "vendor"
OUT_DIR = VENDOR_DIR / "pyc"
RECORD_FILE = "sources.json"

# Runs inside Pyodide. /io/in holds the archives, /io/out receives them compiled; argv: [stdlib zip, wheel].
COMPILE_PY = r'''
import base64, hashlib, importlib.util, marshal, sys, zipfile

def pyc(source, path):
    code = compile(source, path, "exec", dont_inherit=True)
    flags = (0b01).to_bytes(4, "little")  # hash-based, source not checked (PEP 552)
    return importlib.util.MAGIC_NUMBER + flags + importlib.util.source_hash(source) + marshal.dumps(code)

def record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

def compile_archive(name, runtime_prefix, is_wheel):
    members = []
    with zipfile.ZipFile(f"/io/in/{name}") as zin:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith(".py"):
                out = zipfile.ZipInfo(info.filename + "c", info.date_time)
                out.external_attr = info.external_attr
                members.append((out, pyc(data, runtime_prefix + info.filename)))
            else:
                members.append((info, data))
    if is_wheel:
        (rec_info, _), = [(i, d) for i, d in members if i.filename.endswith(".dist-info/RECORD")]
        lines = [f"{i.filename},{record_hash(d)},{len(d)}" for i, d in members if i is not rec_info]
        members = [(i, ("\n".join(lines + [f"{rec_info.filename},,"]) + "\n").encode() if i is rec_info else d)
                   for i, d in members]
    with zipfile.ZipFile(f"/io/out/{name}", "w") as zout:
        for info, data in members:
            info.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(info, data, compresslevel=9)
    return sum(1 for i, _ in members if i.filename.endswith(".pyc"))

stdlib, wheel = sys.argv
major, minor = sys.version_info[:2]
n1 = compile_archive(stdlib, f"/lib/python{major}{minor}.zip/", False)
n2 = compile_archive(wheel, f"/lib/python{major}.{minor}/site-packages/", True)
print(f"{stdlib}: {n1} modules, {wheel}: {n2} modules compiled by Python {sys.version.split()[0]}")
'''

NODE_JS = r'''
const [pyodideDir, ioDir, code, ...argv] = process.argv.slice(1);
const { loadPyodide } = await import(`${pyodideDir}/pyodide.mjs`);
const py = await loadPyodide({ indexURL: `${pyodideDir}/` });
py.FS.mkdirTree('/io');
py.FS.mount(py.FS.filesystems.NODEFS, { root: ioDir }, '/io');
py.runPython('import sys');
py.globals.get('sys').argv = py.toPy(argv);
py.runPython(code);
'''


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def numpy_entry() -> dict:
    lock = json.loads((PYODIDE / "pyodide-lock.json").read_text())
    return lock["packages"]["numpy"]


def inputs() -> dict[str, Path]:
    """The archives to compile, by output name: Pyodide's stdlib and the vendored official numpy wheel."""
    wheel = numpy_entry()["file_name"]
    return {"python_stdlib.zip": PYODIDE / "python_stdlib.zip", wheel: VENDOR_DIR / wheel}


def main() -> int:
    if not (PYODIDE / "pyodide.mjs").is_file():
        raise SystemExit(f"{PYODIDE} is missing: run `npm ci` first.")
    if shutil.which("node") is None:
        raise SystemExit("node is needed (it runs Pyodide's own CPython to compile).")
    sources = inputs()
    official = numpy_entry()["sha256"]
    wheel_name = numpy_entry()["file_name"]
    if sha256_file(sources[wheel_name]) != official:
        raise SystemExit(f"{sources[wheel_name]} is not the official wheel: run `python build/fetch_vendor.py`.")
    with tempfile.TemporaryDirectory() as tmp:
        io_dir = Path(tmp)
        (io_dir / "in").mkdir()
        (io_dir / "out").mkdir()
        for name, src in sources.items():
            shutil.copyfile(src, io_dir / "in" / name)
        subprocess.run(["node", "--input-type=module", "-e", NODE_JS, str(PYODIDE), str(io_dir), COMPILE_PY,
                        *sources], check=True)
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        for name in sources:
            shutil.copyfile(io_dir / "out" / name, OUT_DIR / name)
    version = json.loads((PYODIDE / "package.json").read_text())["version"]
    record = {
        "pyodide": version,
        "inputs": {name: sha256_file(src) for name, src in sources.items()},
        "outputs": {name: sha256_file(OUT_DIR / name) for name in sources},
    }
    (OUT_DIR / RECORD_FILE).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT_DIR.relative_to(ROOT)}/: {', '.join(sources)}, {RECORD_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
