"""Assemble the static site (GitHub Pages ready) from web/, the models, npm assets and py_src/.

Usage: python build/build_site.py [--out dist/site] [--allow-missing-emotion-model]

Standard library only (no torch, no numpy): CI's Pages job runs it on a bare Python, after `npm ci` (node runs
Pyodide to compile py_src/ to the bytecode the wheel carries: precompile_python.cached_bytecode).
The output is deterministic: same inputs, same bytes, same manifest.json.

Layout of the output:
  index.html, app.js, style.css, js/*.js ...   copied from web/ (everything but web/models)
  sw.js                                        at the root (a service worker controls only its own folder and below)
  models/face_detector.onnx, face_detector_full_range.onnx
  models/emotion/<model id>/model.onnx, model.json, model.webgl.onnx (batch 1, WebGL only; none for int8
                                               weights): one folder per emotion model in web/models/emotion/
                                               (ids like lite0s5-48.ferplus)
  models/**/*.onnx.gz                          gzipped copies the page downloads instead (precompressed()); also
  vendor/pyodide/python_stdlib.zip.gz          the standard library's
  vendor/pyodide/                              core runtime + a lock file that lists only the local numpy wheel;
                                               stdlib and numpy compiled to bytecode (build/vendor/pyc/); the page
                                               installs numpy itself (manifest.json `numpy_wheel`)
  vendor/ort/                                  onnxruntime-web: one bundle per execution provider
  wheels/emotion_runtime-<ver>-py3-none-any.whl   py_src/ with Pyodide's bytecode beside each module (__pycache__)
  manifest.json                                {files: {path: {sha256, bytes, gzip?}}, totals, ...}
  .nojekyll
"""
from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import html.parser
import json
import re
import shutil
import sys
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "build"))
from precompile_python import cached_bytecode  # noqa: E402 - Pyodide's bytecode for the runtime wheel
from serve import CSP  # noqa: E402 - the one definition of the policy

VENDOR_DIR = ROOT / "build" / "vendor"

# Pyodide files the browser fetches: the ES module loader, the emscripten glue, the interpreter, the stdlib.
PYODIDE_FILES = ("pyodide.mjs", "pyodide.asm.js", "pyodide.asm.wasm", "python_stdlib.zip")
PYODIDE_PACKAGES = ("numpy",)  # Pyodide-built wheels the site ships (web/js/runtime.js installs them)

# One onnxruntime-web bundle per execution provider, imported lazily by web/js/inference.js, so a browser only
# downloads the one it uses: WebGPU (JSEP) 28.7 MB, WebGL 0.5 MB, WASM 14.3 MB. The all-in-one ort.all.min.mjs
# would host less (29 MB) but makes the WASM fallback use the JSEP binary: twice the download, ~2x slower.
ORT_FILES = (
    "ort.min.mjs", "ort-wasm-simd-threaded.jsep.mjs", "ort-wasm-simd-threaded.jsep.wasm",  # webgpu (+ wasm)
    "ort.webgl.min.mjs",  # webgl
    "ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm",  # wasm
)

FACE_DETECTOR = "face_detector.onnx"
# issue 10: the full-range detector (small/far faces), used for photos and selectable for the camera
FACE_DETECTOR_FULL_RANGE = "face_detector_full_range.onnx"
# Emotion models: web/models/emotion/<model id>/ each, as model_export ships them. Every folder found is listed
# in manifest.json's model catalog, so a model trained on other classes appears in the page after a build.
EMOTION_DIR = "emotion"
EMOTION_MODEL = "model.onnx"
EMOTION_META = "model.json"
EMOTION_WEBGL = "model.webgl.onnx"  # the file name model_export ships; the sidecar names it too
MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
DEFAULT_DATASET = "ferplus"  # the catalog's default: the smallest FER+ model, else the first id

# Fixed zip timestamp (the earliest zip can store) so the runtime wheel is byte-for-byte reproducible.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class BuildError(Exception):
    """An input is missing or wrong; the message says what to do."""


@dataclass(frozen=True)
class Inputs:
    web: Path
    node_modules: Path
    py_src: Path
    pyproject: Path
    vendor: Path


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def require_file(path: Path, hint: str) -> Path:
    if not path.is_file():
        raise BuildError(f"{path} is missing: {hint}")
    return path


# ---------------------------------------------------------------- web/ and its CSP

class _MetaCSP(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.policies: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "meta" and a.get("http-equiv", "").lower() == "content-security-policy":
            self.policies.append(a.get("content", ""))


def _normalise_policy(policy: str) -> list[str]:
    return [" ".join(d.split()) for d in policy.split(";") if d.strip()]


def check_index_csp(index_html: Path) -> None:
    """index.html must carry the same CSP as serve.py's header: GitHub Pages only has the <meta> tag."""
    parser = _MetaCSP()
    parser.feed(index_html.read_text(encoding="utf-8"))
    if not parser.policies:
        raise BuildError(f'{index_html} has no <meta http-equiv="Content-Security-Policy">; add one with '
                         f'content="{CSP}"')
    if any(_normalise_policy(p) != _normalise_policy(CSP) for p in parser.policies):
        raise BuildError(f"{index_html}: the CSP <meta> tag differs from serve.py's CSP; use exactly:\n{CSP}")


def web_files(web: Path) -> dict[str, Path]:
    """Everything under web/ except models/ (handled separately) and hidden files."""
    require_file(web / "index.html", "the page itself is missing (web/index.html).")
    check_index_csp(web / "index.html")
    out: dict[str, Path] = {}
    for path in sorted(web.rglob("*")):
        rel = path.relative_to(web)
        if not path.is_file() or rel.parts[0] == "models" or any(p.startswith(".") for p in rel.parts):
            continue
        out[rel.as_posix()] = path
    return out


# ---------------------------------------------------------------- models

def emotion_model(folder: Path) -> tuple[dict[str, Path], dict]:
    """One shipped emotion model folder -> (site files, catalog entry), checked against its sidecar."""
    model_id = folder.name
    if not MODEL_ID.match(model_id):
        raise BuildError(f"{folder}: a model folder name may hold only letters, digits, '.', '_' and '-'.")
    hint = "export it again with model_export (`--ship web/models`), or remove the folder."
    onnx = require_file(folder / EMOTION_MODEL, hint)
    meta = require_file(folder / EMOTION_META, hint)
    sidecar = json.loads(meta.read_text())
    labels = sidecar.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
        raise BuildError(f"{meta} has no list of class labels.")
    if sidecar.get("id", model_id) != model_id:
        raise BuildError(f"{meta} names model {sidecar['id']!r} but sits in folder {model_id!r}.")
    expected = sidecar.get("sha256")
    actual = sha256_hex(onnx.read_bytes())
    if expected and expected != actual:
        raise BuildError(f"{meta} says sha256 {expected} but {onnx} has {actual}: the sidecar is stale, re-export.")
    site = f"models/{EMOTION_DIR}/{model_id}"
    files = {f"{site}/{EMOTION_MODEL}": onnx, f"{site}/{EMOTION_META}": meta}
    entry = {"id": model_id, "title": sidecar.get("title") or f"{model_id} ({len(labels)} classes)",
             "dataset": sidecar.get("dataset"), "labels": labels, "parameters": sidecar.get("parameters"),
             "model": f"{site}/{EMOTION_MODEL}", "meta": f"{site}/{EMOTION_META}"}
    # Optional batch-1 copy for onnxruntime-web's WebGL backend (fixed shapes only); fetched only on WebGL.
    webgl = sidecar.get("variants", {}).get("webgl")
    if webgl and webgl.get("shipped"):
        if webgl.get("file") != EMOTION_WEBGL:
            raise BuildError(f"{meta} names the WebGL variant {webgl.get('file')!r}; the page expects {EMOTION_WEBGL!r}.")
        path = require_file(folder / EMOTION_WEBGL, f"{meta} lists it as shipped; re-export the model.")
        if webgl.get("sha256") and webgl["sha256"] != sha256_hex(path.read_bytes()):
            raise BuildError(f"{meta} says {EMOTION_WEBGL} has sha256 {webgl['sha256']} but it differs: re-export.")
        files[f"{site}/{EMOTION_WEBGL}"] = path
        entry["webgl"] = f"{site}/{EMOTION_WEBGL}"
    return files, entry


def default_model_id(catalog: list[dict]) -> str:
    """The catalog's default model: the FER+ one with the fewest parameters (the fastest per face: the page's frame
    budget holds on phones; a larger one is a choice), ties by id; without FER+, the first id."""
    fer_plus = [m for m in catalog if m["dataset"] == DEFAULT_DATASET]
    if not fer_plus:
        return catalog[0]["id"]
    return min(fer_plus, key=lambda m: (m.get("parameters") is None, m.get("parameters") or 0, m["id"]))["id"]


def model_files(models: Path, allow_missing_emotion: bool) -> tuple[dict[str, Path], dict]:
    """Site files of the face detectors and every emotion model, and manifest.json's `models` table:
    {face_detector, face_detector_full_range, emotion: [catalog entries sorted by id], emotion_default: id}."""
    detectors = {"face_detector": FACE_DETECTOR, "face_detector_full_range": FACE_DETECTOR_FULL_RANGE}
    files = {f"models/{name}": require_file(
        models / name, "convert it with `python build/convert_detector.py` (it is normally committed).")
        for name in detectors.values()}
    table: dict = {key: f"models/{name}" for key, name in detectors.items()}
    folders = sorted(p for p in (models / EMOTION_DIR).glob("*") if p.is_dir()) if (models / EMOTION_DIR).is_dir() else []
    if not folders:
        if not allow_missing_emotion:
            raise BuildError(f"{models / EMOTION_DIR}/<model id>/{EMOTION_MODEL} is missing: export the trained model "
                             "(model_export/, `--ship web/models`) or pass --allow-missing-emotion-model for a test build.")
        print(f"warning: no emotion model in {models / EMOTION_DIR}; building without one (--allow-missing-emotion-model)",
              file=sys.stderr)
        return files, table
    catalog = []
    for folder in folders:
        folder_files, entry = emotion_model(folder)
        files |= folder_files
        catalog.append(entry)
    table["emotion"] = catalog
    table["emotion_default"] = default_model_id(catalog)
    return files, table


# ---------------------------------------------------------------- Pyodide

def precompiled(vendor: Path, name: str, source: Path) -> Path:
    """The bytecode-compiled copy of `source` (build/precompile_python.py wrote it to vendor/pyc/), after checking
    that it was compiled from exactly this file and is unchanged since."""
    hint = "re-create it with `python build/precompile_python.py` (needs node)."
    record = json.loads(require_file(vendor / "pyc" / "sources.json", hint).read_text())
    compiled = require_file(vendor / "pyc" / name, hint)
    if record["inputs"].get(name) != sha256_hex(source.read_bytes()):
        raise BuildError(f"{compiled} was compiled from another {source.name} than {source}; {hint}")
    if record["outputs"].get(name) != sha256_hex(compiled.read_bytes()):
        raise BuildError(f"{compiled} does not match its sha256 in sources.json; {hint}")
    return compiled


def pyodide_files(node_modules: Path, vendor: Path) -> tuple[dict[str, Path], dict[str, bytes], str]:
    """Copied files, generated files (the reduced lock file) and the Pyodide version.

    The standard library and numpy ship as bytecode (vendor/pyc/, see build/precompile_python.py): the browser
    then imports them without compiling ~300 modules from source on every visit. The lock file lists the
    compiled wheel's sha256, which Pyodide checks on load.
    """
    src = node_modules / "pyodide"
    npm_hint = "run `npm ci` in the repository root."
    lock = json.loads(require_file(src / "pyodide-lock.json", npm_hint).read_text())
    copied = {f"vendor/pyodide/{name}": require_file(src / name, npm_hint) for name in PYODIDE_FILES}
    copied["vendor/pyodide/python_stdlib.zip"] = precompiled(vendor, "python_stdlib.zip", src / "python_stdlib.zip")
    packages = {}
    for name in PYODIDE_PACKAGES:
        entry = lock["packages"][name]
        wheel = require_file(vendor / entry["file_name"],
                             "it is committed under build/vendor/; re-create it with `python build/fetch_vendor.py`.")
        actual = sha256_hex(wheel.read_bytes())
        if actual != entry["sha256"]:
            raise BuildError(f"{wheel}: sha256 {actual} does not match pyodide-lock.json ({entry['sha256']}).")
        if entry["depends"]:
            raise BuildError(f"{name} depends on {entry['depends']}, which are not vendored.")
        compiled = precompiled(vendor, entry["file_name"], wheel)
        copied[f"vendor/pyodide/{entry['file_name']}"] = compiled
        packages[name] = {**entry, "sha256": sha256_hex(compiled.read_bytes())}
    # Only the vendored packages: loadPackage() of anything else fails at once instead of fetching a 404.
    reduced = {"info": lock["info"], "packages": packages}
    generated = {"vendor/pyodide/pyodide-lock.json": (json.dumps(reduced, indent=1, sort_keys=True) + "\n").encode()}
    return copied, generated, lock["info"]["version"]


def ort_files(node_modules: Path) -> tuple[dict[str, Path], str]:
    src = node_modules / "onnxruntime-web"
    hint = "run `npm ci` in the repository root."
    version = json.loads(require_file(src / "package.json", hint).read_text())["version"]
    return {f"vendor/ort/{name}": require_file(src / "dist" / name, hint) for name in ORT_FILES}, version


# ---------------------------------------------------------------- the emotion_runtime wheel

def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _wheel_name(project_name: str) -> str:
    return re.sub(r"[-_.]+", "_", project_name).lower()


def build_runtime_wheel(pyproject: Path, py_src: Path,
                        bytecode: Callable[[dict[str, bytes]], dict[str, bytes]] | None = None) -> tuple[str, bytes, str]:
    """(file name, bytes, version) of a pure-Python wheel of the packages under py_src/.

    Built with zipfile rather than pip/setuptools so that it is reproducible and needs nothing installed.
    `bytecode` ({module path: source} -> {cache path: pyc}) adds each module's cached bytecode beside its source
    (precompile_python.cached_bytecode: Pyodide's, so the page does not compile py_src at every start).
    """
    project = tomllib.loads(require_file(pyproject, "run from a checkout of the repository.").read_text())["project"]
    dist, version = _wheel_name(project["name"]), project["version"]
    members: dict[str, bytes] = {}
    packages = sorted(p for p in py_src.iterdir() if p.is_dir() and any(p.glob("*.py")))
    if not packages:
        raise BuildError(f"no Python package found under {py_src}.")
    for package in packages:
        for path in sorted(package.rglob("*")):
            rel = path.relative_to(py_src)
            if path.is_file() and "__pycache__" not in rel.parts and path.suffix not in (".pyc", ".pyo"):
                members[rel.as_posix()] = path.read_bytes()
    if bytecode is not None:
        members |= bytecode({name: data for name, data in members.items() if name.endswith(".py")})
    info = f"{dist}-{version}.dist-info"
    metadata = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {version}",
        f"Summary: {project.get('description', '')}",
        f"Requires-Python: {project.get('requires-python', '')}",
        *[f"Requires-Dist: {dep}" for dep in project.get("dependencies", [])],
    ]
    members[f"{info}/METADATA"] = ("\n".join(metadata) + "\n").encode()
    members[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: build_site.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n").encode()
    members[f"{info}/top_level.txt"] = ("\n".join(p.name for p in packages) + "\n").encode()
    record = [f"{name},{_record_hash(data)},{len(data)}" for name, data in members.items()]
    members[f"{info}/RECORD"] = ("\n".join(record + [f"{info}/RECORD,,"]) + "\n").encode()

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, data in members.items():
            zi = zipfile.ZipInfo(name, ZIP_EPOCH)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data)
    return f"{dist}-{version}-py3-none-any.whl", buffer.getvalue(), version


# ---------------------------------------------------------------- output

def gzip_size(data: bytes) -> int:
    # Level 6 is what static hosts (GitHub Pages included) typically use on the fly.
    return len(gzip.compress(data, compresslevel=6, mtime=0))


# Files that hosts such as GitHub Pages send uncompressed (application/octet-stream, application/zip) although gzip
# shrinks them: the ONNX models, and Python's standard library (a zip of stored members, build/precompile_python.py).
# Each gets a gzipped copy beside it, which js/manifest.js downloads and inflates (DecompressionStream) and checks
# against the original's sha256; the original stays for browsers without DecompressionStream.
PRECOMPRESS_SUFFIXES = (".onnx", "/python_stdlib.zip")
PRECOMPRESS_MIN_SAVING = 0.05  # a copy that saves less is not worth a second file


def precompressed(files: dict[str, bytes]) -> dict[str, bytes]:
    """Gzipped copies (`<path>.gz`, level 9, no timestamp: deterministic) of the files worth compressing."""
    out = {}
    for path, data in sorted(files.items()):
        if path.endswith(PRECOMPRESS_SUFFIXES):
            packed = gzip.compress(data, compresslevel=9, mtime=0)
            if len(packed) <= (1 - PRECOMPRESS_MIN_SAVING) * len(data):
                out[path + ".gz"] = packed
    return out


def _group(path: str) -> str:
    if path.startswith("vendor/pyodide/"):
        return "pyodide"
    if path.startswith("vendor/ort/"):
        return "ort"
    if path.startswith("models/"):
        return "models"
    if path.startswith("wheels/"):
        return "runtime_wheel"
    return "app"


def build_manifest(files: dict[str, bytes], extra: dict) -> dict:
    entries, groups = {}, {}
    total_raw = total_gz = 0
    for path in sorted(files):
        data = files[path]
        gz = gzip_size(data)
        entries[path] = {"sha256": sha256_hex(data), "bytes": len(data)}
        g = groups.setdefault(_group(path), {"bytes": 0, "gzip_bytes": 0})
        g["bytes"] += len(data)
        g["gzip_bytes"] += gz
        total_raw += len(data)
        total_gz += gz
    for path in entries:
        if path.endswith(PRECOMPRESS_SUFFIXES) and path + ".gz" in entries:
            entries[path]["gzip"] = path + ".gz"
    return {
        "format": 1,
        **extra,
        "totals": {"files": len(entries), "bytes": total_raw, "gzip_bytes": total_gz},
        "groups": dict(sorted(groups.items())),
        "files": entries,
    }


def check_out_dir(out: Path) -> None:
    """Never wipe a folder that is not a previous build (it would hold a manifest.json)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "manifest.json").is_file())):
        raise BuildError(f"{out} exists, is not empty and holds no manifest.json: refusing to delete it.")


def prepare_out_dir(out: Path) -> None:
    check_out_dir(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)


def build(out: Path, inputs: Inputs, allow_missing_emotion_model: bool = False) -> dict:
    """Build the site into `out`; returns the manifest. Nothing is written unless every input is in order."""
    check_out_dir(out)
    copied: dict[str, Path] = {}
    copied.update(web_files(inputs.web))
    shipped_models, models_table = model_files(inputs.web / "models", allow_missing_emotion_model)
    copied.update(shipped_models)
    py_copied, generated, pyodide_version = pyodide_files(inputs.node_modules, inputs.vendor)
    copied.update(py_copied)
    ort_copied, ort_version = ort_files(inputs.node_modules)
    copied.update(ort_copied)
    wheel_name, wheel_bytes, runtime_version = build_runtime_wheel(inputs.pyproject, inputs.py_src, cached_bytecode)
    generated[f"wheels/{wheel_name}"] = wheel_bytes
    generated[".nojekyll"] = b""  # GitHub Pages: serve files as they are, no Jekyll pass

    overlap = set(copied) & set(generated)
    if overlap:
        raise BuildError(f"web/ contains files the build generates: {sorted(overlap)}")
    files = {path: src.read_bytes() for path, src in copied.items()} | generated
    files |= precompressed(files)

    lock = json.loads(generated["vendor/pyodide/pyodide-lock.json"])
    extra = {
        "runtime_wheel": f"wheels/{wheel_name}",
        # web/js/runtime.js downloads it while Pyodide starts and installs it itself (see there why)
        "numpy_wheel": f"vendor/pyodide/{lock['packages']['numpy']['file_name']}",
        "models": models_table,
        "versions": {
            "pyodide": pyodide_version,
            "onnxruntime-web": ort_version,
            "emotion_runtime": runtime_version,
            **{name: lock["packages"][name]["version"] for name in PYODIDE_PACKAGES},
        },
    }
    manifest = build_manifest(files, extra)

    prepare_out_dir(out)
    for path, data in sorted(files.items()):
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    return manifest


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Assemble the static site into a folder.")
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "site")
    parser.add_argument("--web", type=Path, default=ROOT / "web", help="page sources and models/ (default: web/)")
    parser.add_argument("--node-modules", type=Path, default=ROOT / "node_modules")
    parser.add_argument("--allow-missing-emotion-model", action="store_true",
                        help="test builds only: build even if web/models/emotion/ holds no model yet")
    args = parser.parse_args(argv)
    inputs = Inputs(web=args.web, node_modules=args.node_modules, py_src=ROOT / "py_src",
                    pyproject=ROOT / "pyproject.toml", vendor=VENDOR_DIR)
    try:
        manifest = build(args.out, inputs, args.allow_missing_emotion_model)
    except BuildError as exc:
        print(f"build_site: error: {exc}", file=sys.stderr)
        return 1
    t = manifest["totals"]
    print(f"built {args.out}: {t['files']} files, {_mb(t['bytes'])} raw, {_mb(t['gzip_bytes'])} gzip")
    for name, g in manifest["groups"].items():
        print(f"  {name:14s} {_mb(g['bytes']):>10s} raw {_mb(g['gzip_bytes']):>10s} gzip")
    return 0


if __name__ == "__main__":
    sys.exit(main())
