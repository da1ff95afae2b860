"""Compile Pyodide's standard library and the numpy wheel to bytecode, so the browser does not compile them.

Pyodide 0.27.7 ships both as Python source: every visit, starting Python and `import numpy` compile some 300
modules from source, about 2 s of CPU on a 2-core machine (issue 9). This script replaces each `.py` in
node_modules/pyodide/python_stdlib.zip and in the vendored numpy wheel (build/vendor/) by its `.pyc`, compiled
by Pyodide's own CPython (run in node, so the bytecode is exactly the runtime's), as unchecked hash-based pycs
(PEP 552: no timestamps, nothing to validate at import). Other members are copied unchanged; the wheel's RECORD
lists the new members. The outputs and a record of their inputs go to build/vendor/pyc/, which is committed:
build_site.py ships them after checking that their inputs are still the current ones.

Both archives are also trimmed to what the runtime uses (issue 23: bytes of a cold visit). Pyodide is started in
node exactly as web/js/runtime.js starts it (the numpy wheel unpacked, the modules of `import numpy` loaded), then
emotion_runtime (py_src/) is imported and run through every step of its per-frame API (EXERCISE_PY), and one of its
errors is raised into JavaScript. The modules Python then holds decide what stays: only those modules (and the data
files of their packages), except for packages whose modules are looked up by name at run time (WHOLE_PACKAGES: encodings),
kept whole; numpy loses every module and extension module nothing loaded (random, fft, ma, lapack_lite,
recfunctions, ...), its C headers and static libraries, test suites and typing stubs.
numpy.linalg's LAPACK kernels (_umath_linalg, 1.9 MB of WebAssembly) are imported by `import numpy` but never called
by the runtime: a small Python module (LINALG_PLACEHOLDER) takes their place, the census runs against it (so a
runtime that starts calling numpy.linalg fails the build), and a call says what is missing. tests/test_python_trim.py
checks that every module py_src imports is still there.

The emotion_runtime wheel gets the same treatment at every site build instead (its sources change with py_src/):
build_site.build_runtime_wheel puts cached_bytecode's pycs in the wheel's __pycache__ folders beside the sources.

Usage (repository root, after `npm ci`): python build/precompile_python.py
Needs node; standard-library Python otherwise.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
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

# numpy extension modules shipped as this Python module instead (archive path without the platform suffix): `import
# numpy` imports them, emotion_runtime never calls them. Not shipping _umath_linalg saves 0.42 MB of a cold visit and
# the compilation of its 1.9 MB of WebAssembly at every start.
PLACEHOLDERS = ("numpy/linalg/_umath_linalg",)
# Standard-library packages kept whole once used: their modules are found by name at run time (a codec by its
# name), not imported by name in code, so the census cannot see which ones a visit will need.
WHOLE_PACKAGES = ("encodings",)
LINALG_PLACEHOLDER = '''"""numpy.linalg's LAPACK kernels are not part of Emotion Lens's browser build of numpy
(build/precompile_python.py): `import numpy` imports this module, the runtime never calls numpy.linalg."""


def __getattr__(name):
    # AttributeError, so hasattr() and getattr(..., default) keep working.
    raise AttributeError(f"numpy.linalg ({name}) is not available here: this build of numpy leaves out its LAPACK "
                         "module to keep the download small")
'''

# Runs inside Pyodide, ahead of COMPILE_PY and CACHE_PY: a module's source as the bytecode the page loads.
PYC_PY = r'''
import importlib.util, marshal

def pyc(source, path):
    # optimize=2 is `python -OO`: no docstrings, no asserts (about an eighth of the bytes); the page runs Python with
    # PYTHONOPTIMIZE=2 to match (numpy's docstring helpers read the flag).
    code = compile(source, path, "exec", dont_inherit=True, optimize=2)
    flags = (0b01).to_bytes(4, "little")  # hash-based, source not checked (PEP 552)
    return importlib.util.MAGIC_NUMBER + flags + importlib.util.source_hash(source) + marshal.dumps(code)
'''

# Runs inside Pyodide. /io/in holds the archives, /io/out receives them compiled; argv: [stdlib zip, wheel].
COMPILE_PY = PYC_PY + r'''
import base64, hashlib, json, sys, zipfile

def record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

def compile_archive(name, runtime_prefix, is_wheel, keep, compress_type):
    members = []
    with zipfile.ZipFile(f"/io/in/{name}") as zin:
        for info in zin.infolist():
            if not keep(info.filename):
                continue
            data = zin.read(info)
            stem = info.filename.split(".cpython-")[0]
            if is_wheel and stem in used["placeholders"]:
                out = zipfile.ZipInfo(stem + ".pyc", info.date_time)
                out.external_attr = info.external_attr
                members.append((out, pyc(used["placeholders"][stem].encode(), runtime_prefix + stem + ".py")))
            elif info.filename.endswith(".py"):
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
            info.compress_type = compress_type
            zout.writestr(info, data, compresslevel=9 if compress_type == zipfile.ZIP_DEFLATED else None)
    return sum(1 for i, _ in members if i.filename.endswith(".pyc"))

def top(name):
    """'json/decoder.py' -> 'json'; 'string.py' -> 'string'; 'numpy/linalg/x.py' -> 'numpy/linalg'."""
    parts = name.split("/")
    if parts[0] == "numpy" and len(parts) > 2:
        return "numpy/" + parts[1]
    return parts[0].split(".")[0]

stdlib, wheel = sys.argv
used = json.load(open("/io/used.json"))
stdlib_tops = {top(m) for m in used["stdlib"]}
imported = set(used["stdlib"]) | set(used["numpy"])

def keep_stdlib(name):
    if top(name) in used["whole"] or not name.endswith(".py"):
        return top(name) in stdlib_tops  # data files go with their package
    return name in imported

def keep_numpy(name):
    if not name.startswith("numpy/"):
        return True  # dist-info
    # the modules and extension modules that were loaded (placeholders in place of theirs); no C headers, static
    # libraries, typing stubs, tests or subpackages nothing imported (random, fft, ma, ...)
    return name in imported or name.split(".cpython-")[0] in used["placeholders"]

major, minor = sys.version_info[:2]
# The standard library's members stored, not deflated: the site ships the zip gzipped as a whole (build_site
# precompressed), which compresses across modules (~0.2 MB smaller), and zipimport then reads without inflating.
n1 = compile_archive(stdlib, f"/lib/python{major}{minor}.zip/", False, keep_stdlib, zipfile.ZIP_STORED)
n2 = compile_archive(wheel, f"/lib/python{major}.{minor}/site-packages/", True, keep_numpy, zipfile.ZIP_DEFLATED)
print(f"{stdlib}: {n1} modules, {wheel}: {n2} modules compiled by Python {sys.version.split()[0]}")
'''

# Runs inside Pyodide after numpy and emotion_runtime are imported: every step of the per-frame API, so that modules
# imported on first use are loaded too.
EXERCISE_PY = r'''
import json
import numpy as np
import emotion_runtime as er

W, H = 160, 96
frame = (np.arange(H * W * 4, dtype=np.uint32) % 251).astype(np.uint8)
labels = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]

def classify(bridge, faces, numpy_path):
    if faces and numpy_path:
        bridge.emotion_input()
    elif faces:
        bridge.crop_geometry_json()
        bridge.emotion_input_drawn(np.zeros(faces * 48 * 48 * 4, np.uint8), 48)
    logits = np.linspace(-1, 1, faces * len(labels), dtype=np.float32).reshape(faces, -1) if faces else None
    bridge.update_json(logits)

for mode in ("ema", "mean", "median", "none"):
    for detector in ("short_range", "full_range"):
        for numpy_path in (True, False):
            bridge = er.AppBridge(json.dumps({"labels": labels}), max_faces=4, smoothing=mode, span=5)
            bridge.set_detector(detector)
            spec = er.DETECTORS[detector]
            regressors = np.zeros((1, spec.num_anchors, 16), np.float32)
            regressors[0, :, 2:4] = 40.0
            scores = np.full((1, spec.num_anchors, 1), -10.0, np.float32)
            scores[0, spec.num_anchors // 2, 0] = 5.0
            for _ in range(4):
                if bridge.detection_due(W, H, 2):
                    if numpy_path:
                        bridge.detector_input(frame, W, H)
                    else:
                        bridge.letterbox_json(W, H)
                        bridge.detector_input_square(np.zeros(spec.input_size ** 2 * 4, np.uint8), W, H)
                    faces = bridge.decode_faces(regressors, scores)
                else:
                    faces = bridge.keep_faces(W, H, frame if numpy_path else None)
                classify(bridge, faces, numpy_path)
            bridge.labels_json()
            bridge.smoothing_json()
            bridge.reset()
'''

# Starts Pyodide as web/js/runtime.js does and prints the archive members of every module Python then holds.
USED_JS = r'''
const [pyodideDir, wheel, runtimeWheel, refresh, exercise, placeholdersJson, envJson, ...startLibs] =
  process.argv.slice(1);
const placeholders = JSON.parse(placeholdersJson);
const fs = await import('node:fs');
const { loadPyodide } = await import(`${pyodideDir}/pyodide.mjs`);
const py = await loadPyodide({ indexURL: `${pyodideDir}/`, env: JSON.parse(envJson) });
const sitePackages = py.runPython('import site; site.getsitepackages()[0]');
py.unpackArchive(new Uint8Array(fs.readFileSync(wheel)), 'wheel', { extractDir: sitePackages });
const suffix = py.runPython('import importlib.machinery; importlib.machinery.EXTENSION_SUFFIXES[0]');
for (const [stem, source] of Object.entries(placeholders)) {  // as shipped: the placeholder, not the module
  py.FS.unlink(`${sitePackages}/${stem}${suffix}`);
  py.FS.writeFile(`${sitePackages}/${stem}.py`, source);
}
for (const lib of startLibs) await py._api.loadDynlib(`${sitePackages}/${lib}${suffix}`, false);
py.unpackArchive(new Uint8Array(fs.readFileSync(runtimeWheel)), 'wheel', { extractDir: sitePackages });
py.runPython(refresh, { locals: py.toPy({ path: sitePackages }) });
py.pyimport('emotion_runtime');
try {
  py.runPython(exercise);
} catch (err) {
  process.stderr.write(`the exercise failed: ${err.message}\n`);  // node would print the minified source line
  process.exit(1);
}
// A Python error on its way to JavaScript (its traceback formatted), as a bad call to the runtime raises one: the
// modules that takes are kept too.
try {
  py.runPython('import emotion_runtime as er\ner.AppBridge("not json", 1, "ema", 3)');
  process.stderr.write('the error exercise raised nothing\n');
  process.exit(1);
} catch (err) {
  // expected: a JSONDecodeError
}
const files = py.runPython(`
import json, sys
files = [getattr(m, "__file__", None) or "" for m in list(sys.modules.values())]
json.dumps(sorted(set(files)))
`);
const stdlib = [], numpy = [];
for (const file of JSON.parse(files)) {
  const lib = file.match(/^\/lib\/python\d+\.zip\/(.*)$/);
  if (lib) stdlib.push(lib[1]);
  const site = file.startsWith(`${sitePackages}/numpy/`) ? file.slice(sitePackages.length + 1) : null;
  if (site) numpy.push(site);
}
process.stdout.write(JSON.stringify({ stdlib, numpy }));
'''

# Runs inside Pyodide: /io/sources.json maps a module's site-packages path to its source; /io/bytecode.json receives
# the path of each one's cached bytecode (__pycache__/<name>.cpython-312.opt-2.pyc) and the pyc, base64.
CACHE_PY = PYC_PY + r'''
import base64, json, sys

site_packages = f"/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages/"
out = {}
for path, source in json.load(open("/io/sources.json")).items():
    data = pyc(source.encode(), site_packages + path)
    out[importlib.util.cache_from_source(path, optimization=2)] = base64.b64encode(data).decode()
json.dump(out, open("/io/bytecode.json", "w"))
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


def require_pyodide_in_node() -> None:
    """Stop with what to install when node or node_modules/pyodide is missing."""
    if not (PYODIDE / "pyodide.mjs").is_file():
        raise SystemExit(f"{PYODIDE} is missing: run `npm ci` first.")
    if shutil.which("node") is None:
        raise SystemExit("node is needed (it runs Pyodide's own CPython to compile).")


def run_in_pyodide(io_dir: Path, code: str, *argv: str, quiet: bool = False) -> None:
    """Run Python `code` in Pyodide's own CPython under node (NODE_JS), `io_dir` mounted at /io, `argv` as sys.argv."""
    require_pyodide_in_node()
    subprocess.run(["node", "--input-type=module", "-e", NODE_JS, str(PYODIDE), str(io_dir), code, *argv],
                   check=True, capture_output=quiet)


def cached_bytecode(sources: dict[str, bytes]) -> dict[str, bytes]:
    """Pyodide's bytecode for pure-Python modules, compiled as the page runs them (optimize=2), at the paths where
    Python's import looks for a module's cache ({"pkg/mod.py": source} -> {"pkg/__pycache__/mod.cpython-312.opt-2.pyc":
    pyc}): unchecked hash-based pycs, so the page neither compiles the sources nor reads them to validate the cache.
    For the emotion_runtime wheel (build_site.build_runtime_wheel), whose sources change with py_src/."""
    with tempfile.TemporaryDirectory() as tmp:
        io_dir = Path(tmp)
        (io_dir / "sources.json").write_text(json.dumps({p: s.decode() for p, s in sources.items()}))
        run_in_pyodide(io_dir, CACHE_PY, quiet=True)
        compiled = json.loads((io_dir / "bytecode.json").read_text())
    return {path: base64.b64decode(pyc) for path, pyc in compiled.items()}


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def numpy_entry() -> dict:
    lock = json.loads((PYODIDE / "pyodide-lock.json").read_text())
    return lock["packages"]["numpy"]


def inputs() -> dict[str, Path]:
    """The archives to compile, by output name: Pyodide's stdlib and the vendored official numpy wheel."""
    wheel = numpy_entry()["file_name"]
    return {"python_stdlib.zip": PYODIDE / "python_stdlib.zip", wheel: VENDOR_DIR / wheel}


def runtime_js_constant(name: str) -> str:
    """The text of a constant of web/js/runtime.js (a list, object or template string), so the census runs its
    values."""
    source = (ROOT / "web" / "js" / "runtime.js").read_text()
    found = re.search(rf"const {name} = (\[[^\]]*\]|`[^`]*`|{{[^}}]*}});", source)
    if not found:
        raise SystemExit(f"web/js/runtime.js has no constant {name}")
    return found.group(1).strip("`")


def numpy_start_libs() -> list[str]:
    """The numpy extension modules web/js/runtime.js loads before `import numpy` (its NUMPY_START_LIBS)."""
    return re.findall(r"'([^']+)'", runtime_js_constant("NUMPY_START_LIBS"))


def python_env() -> dict[str, str]:
    """The environment web/js/runtime.js starts Python with (its PYTHON_ENV: PYTHONOPTIMIZE)."""
    return dict(re.findall(r"(\w+): '([^']*)'", runtime_js_constant("PYTHON_ENV")))


def placeholders() -> dict[str, str]:
    """The numpy extension modules replaced by a Python module, and its source."""
    return {stem: LINALG_PLACEHOLDER for stem in PLACEHOLDERS}


def used_modules(numpy_wheel: Path) -> dict:
    """Archive members ({stdlib: [...], numpy: [...]}) of the modules Python holds once Pyodide has started as
    web/js/runtime.js starts it (the placeholders in place) and emotion_runtime has run EXERCISE_PY; and the
    placeholders ({stem: source}) and the packages kept whole (WHOLE_PACKAGES)."""
    sys.path.insert(0, str(ROOT / "build"))
    from build_site import build_runtime_wheel

    _, runtime_wheel, _ = build_runtime_wheel(ROOT / "pyproject.toml", ROOT / "py_src")
    with tempfile.NamedTemporaryFile(suffix=".whl") as wheel:
        wheel.write(runtime_wheel)
        wheel.flush()
        done = subprocess.run(["node", "--input-type=module", "-e", USED_JS, str(PYODIDE), str(numpy_wheel), wheel.name,
                               runtime_js_constant("REFRESH_SITE_PACKAGES"), EXERCISE_PY,
                               json.dumps(placeholders()), json.dumps(python_env()), *numpy_start_libs()],
                              capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the module census failed: {done.stderr.strip().splitlines()[-1][:2000]}")
    used = json.loads(done.stdout) | {"placeholders": placeholders(), "whole": list(WHOLE_PACKAGES)}
    if not any(m.startswith("numpy/_core/") for m in used["numpy"]) or "json/__init__.py" not in used["stdlib"]:
        raise SystemExit(f"the module census looks wrong (no numpy._core or json): {done.stdout[:500]}")
    return used


def main() -> int:
    require_pyodide_in_node()
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
        used = used_modules(sources[wheel_name])
        (io_dir / "used.json").write_text(json.dumps(used))
        run_in_pyodide(io_dir, COMPILE_PY, *sources)
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
