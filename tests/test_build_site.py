"""build/build_site.py: the assembled site, its manifest, the vendored numpy wheel and the failure messages."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from browser_fixtures import ROOT, load_build_site, site_problem

BUILD = ROOT / "build" / "build_site.py"
OFFICIAL_LOCK = ROOT / "node_modules" / "pyodide" / "pyodide-lock.json"

pytestmark = pytest.mark.skipif(site_problem() is not None, reason=site_problem() or "")

bs = load_build_site()
SHIPPED = ROOT / "web" / "models" / "emotion"
HAS_EMOTION = any(SHIPPED.glob("*/model.onnx"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_build(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BUILD), *args], capture_output=True, text=True, cwd=ROOT)


def repo_inputs(web: Path | None = None, node_modules: Path | None = None):
    return bs.Inputs(web=web or ROOT / "web", node_modules=node_modules or ROOT / "node_modules",
                     py_src=ROOT / "py_src", pyproject=ROOT / "pyproject.toml", vendor=bs.VENDOR_DIR)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("build") / "site"
    args = ["--out", str(out)] + ([] if HAS_EMOTION else ["--allow-missing-emotion-model"])
    result = run_build(*args)
    assert result.returncode == 0, result.stderr
    assert "gzip" in result.stdout  # the size summary
    return out


@pytest.fixture
def web_copy(tmp_path) -> Path:
    """A scratch copy of web/ to break in one way per test."""
    web = tmp_path / "web"
    shutil.copytree(ROOT / "web", web)
    return web


def test_manifest_lists_every_file_with_its_hash_and_size(site):
    manifest = json.loads((site / "manifest.json").read_text())
    on_disk = {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    for path, entry in manifest["files"].items():
        gz = {"gzip": path + ".gz"} if path + ".gz" in manifest["files"] else {}
        assert entry == {"sha256": sha256(site / path), "bytes": (site / path).stat().st_size, **gz}, path
    totals = manifest["totals"]
    assert totals["files"] == len(on_disk)
    assert totals["bytes"] == sum(e["bytes"] for e in manifest["files"].values())
    assert totals["bytes"] == sum(g["bytes"] for g in manifest["groups"].values())
    assert 0 < totals["gzip_bytes"] < totals["bytes"]


def test_models_ship_with_gzipped_copies_the_page_inflates(site):
    """GitHub Pages sends .onnx files uncompressed: each model has a gzipped copy (deterministic, level 9) whose
    inflated bytes are the model's, listed in manifest.json so js/manifest.js downloads it instead."""
    manifest = json.loads((site / "manifest.json").read_text())
    models = [p for p in manifest["files"] if p.endswith(".onnx")]
    assert "models/face_detector.onnx" in models
    for path in models:
        entry = manifest["files"][path]
        packed = (site / path).with_name(Path(path).name + ".gz").read_bytes()
        assert entry["gzip"] == path + ".gz" and gzip.decompress(packed) == (site / path).read_bytes(), path
        assert len(packed) <= 0.95 * entry["bytes"], path
        assert packed == gzip.compress((site / path).read_bytes(), compresslevel=9, mtime=0), path
    small = bs.precompressed({"models/a.onnx": bytes(range(256)), "models/b.onnx": bytes(4096), "x.js": bytes(4096)})
    assert set(small) == {"models/b.onnx.gz"}  # random-like bytes do not shrink: no copy; only .onnx files


def test_site_has_the_page_runtime_and_models(site):
    manifest = json.loads((site / "manifest.json").read_text())
    for path in ["index.html", ".nojekyll", "sw.js", "js/sw-register.js", "js/runtime.js", "js/inference.js",
                 "js/manifest.js", "models/face_detector.onnx", "models/face_detector_full_range.onnx",
                 "vendor/pyodide/pyodide.mjs",
                 "vendor/pyodide/pyodide.asm.wasm", "vendor/pyodide/python_stdlib.zip", manifest["runtime_wheel"],
                 *(f"vendor/ort/{name}" for name in bs.ORT_FILES)]:
        assert (site / path).is_file(), path
    # Web sources are copied byte for byte.
    for src in (ROOT / "web").rglob("*"):
        rel = src.relative_to(ROOT / "web")
        if src.is_file() and rel.parts[0] != "models":
            assert (site / rel).read_bytes() == src.read_bytes(), rel
    if HAS_EMOTION:
        # Every shipped model folder is in the catalog, with its sidecar's labels; FER+ is the default.
        catalog = manifest["models"]["emotion"]
        assert [m["id"] for m in catalog] == sorted(p.parent.name for p in SHIPPED.glob("*/model.onnx"))
        for entry in catalog:
            sidecar = json.loads((SHIPPED / entry["id"] / "model.json").read_text())
            assert entry["labels"] == sidecar["labels"] and entry["dataset"] == sidecar.get("dataset")
            assert entry["model"] == f"models/emotion/{entry['id']}/model.onnx" and (site / entry["model"]).is_file()
            assert ("webgl" in entry) == bool(sidecar.get("variants", {}).get("webgl", {}).get("shipped"))
        assert manifest["models"]["face_detector_full_range"] == "models/face_detector_full_range.onnx"
        default = next(m for m in catalog if m["id"] == manifest["models"]["emotion_default"])
        assert default["dataset"] == "ferplus"
        assert not list(site.glob("models/emotion/*/card"))  # model cards stay in the repository
    # Nothing from node_modules that the page does not load (source maps, other ort builds, console.html).
    assert not list(site.rglob("*.map")) and not (site / "vendor/pyodide/console.html").exists()


def test_numpy_wheel_is_the_official_pyodide_build_compiled(site):
    official = json.loads(OFFICIAL_LOCK.read_text())
    reduced = json.loads((site / "vendor/pyodide/pyodide-lock.json").read_text())
    assert reduced["info"] == official["info"]
    assert set(reduced["packages"]) == {"numpy"}, "the lock lists only what is vendored"
    numpy = official["packages"]["numpy"]
    assert sha256(ROOT / "build/vendor" / numpy["file_name"]) == numpy["sha256"]
    # The site ships it compiled to bytecode; the lock carries that file's sha256.
    shipped = site / "vendor/pyodide" / numpy["file_name"]
    assert reduced["packages"]["numpy"] == {**numpy, "sha256": sha256(shipped)}
    assert_compiled_from(shipped, ROOT / "build/vendor" / numpy["file_name"], "numpy")
    # web/js/runtime.js installs it from manifest.json's entry, checked against the manifest's sha256.
    manifest = json.loads((site / "manifest.json").read_text())
    assert manifest["numpy_wheel"] == f"vendor/pyodide/{numpy['file_name']}"
    assert manifest["files"][manifest["numpy_wheel"]]["sha256"] == sha256(shipped)


def test_standard_library_is_pyodides_compiled(site):
    assert_compiled_from(site / "vendor/pyodide/python_stdlib.zip", ROOT / "node_modules/pyodide/python_stdlib.zip",
                         "python_stdlib.zip")


def precompile_placeholders() -> tuple[str, ...]:
    sys.path.insert(0, str(ROOT / "build"))
    import precompile_python

    return precompile_python.PLACEHOLDERS


def assert_compiled_from(compiled: Path, source: Path, what: str) -> None:
    """Every member of `compiled` comes from `source`: a .py as a .pyc for Pyodide's CPython (hash-based,
    unchecked), anything else unchanged; members the runtime does not use are left out (tests/test_python_trim.py);
    build/vendor/pyc/sources.json names `source` as the input."""
    record = json.loads((ROOT / "build/vendor/pyc/sources.json").read_text())
    assert record["inputs"][compiled.name] == sha256(source), f"{what}: compiled from another file"
    assert record["outputs"][compiled.name] == sha256(compiled)
    python = json.loads(OFFICIAL_LOCK.read_text())["info"]["python"]  # e.g. 3.12.7
    major, minor = map(int, python.split(".")[:2])
    magic = {(3, 12): 3531}[(major, minor)].to_bytes(2, "little") + b"\r\n"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(compiled) as out:
        sources = set(src.namelist())
        # numpy's extension modules shipped as a Python placeholder (build/precompile_python.py PLACEHOLDERS)
        placeholders = {name.split(".cpython-")[0] + ".pyc" for name in sources
                        if name.split(".cpython-")[0] in precompile_placeholders()}
        assert not [name for name in out.namelist() if name.endswith(".py")], f"{what}: source left in"
        for name in out.namelist():
            if name.endswith(".pyc"):
                assert name[:-1] in sources or name in placeholders, name
                head = out.read(name)[:8]
                assert head[:4] == magic and int.from_bytes(head[4:], "little") == 0b01, name
            elif not name.endswith(".dist-info/RECORD"):
                assert out.read(name) == src.read(name), name


def test_runtime_wheel_holds_py_src_and_installs(site, tmp_path):
    manifest = json.loads((site / "manifest.json").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wheel = site / manifest["runtime_wheel"]
    assert wheel.name == f"emotion_runtime-{project['version']}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for src in (ROOT / "py_src" / "emotion_runtime").rglob("*.py"):
            rel = src.relative_to(ROOT / "py_src").as_posix()
            assert zf.read(rel) == src.read_bytes(), rel
            # Pyodide's bytecode beside it, where its import looks (PYTHONOPTIMIZE=2), as an unchecked hash pyc
            # (the page checks it is used: test_runtime_boot)
            pyc = zf.read(f"{Path(rel).parent.as_posix()}/__pycache__/{src.stem}.cpython-312.opt-2.pyc")
            assert int.from_bytes(pyc[4:8], "little") == 0b01, rel
        record = zf.read(f"emotion_runtime-{project['version']}.dist-info/RECORD").decode().splitlines()
        assert {line.split(",")[0] for line in record} == names
        for line in record:
            name, digest, size = line.split(",")
            if digest:
                data = zf.read(name)
                assert int(size) == len(data)
                assert digest == bs._record_hash(data), name
        zf.extractall(tmp_path / "site-packages")
    # Importable from the wheel alone (not from py_src).
    out = subprocess.run([sys.executable, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                          "import emotion_runtime as e; print(e.__version__, e.__file__)", str(tmp_path / "site-packages")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    version, path = out.stdout.split()
    assert version == project["version"] and path.startswith(str(tmp_path))


def test_build_is_deterministic(site, tmp_path):
    again = tmp_path / "again"
    bs.build(again, repo_inputs(), allow_missing_emotion_model=not HAS_EMOTION)
    assert (again / "manifest.json").read_bytes() == (site / "manifest.json").read_bytes()
    # Rebuilding into the same folder replaces it (no stale files left behind).
    (again / "stale.txt").write_text("left over")
    bs.build(again, repo_inputs(), allow_missing_emotion_model=not HAS_EMOTION)
    assert not (again / "stale.txt").exists()


def test_missing_face_detector_fails_clearly(web_copy, tmp_path):
    (web_copy / "models" / "face_detector.onnx").unlink()
    result = run_build("--web", str(web_copy), "--out", str(tmp_path / "out"), "--allow-missing-emotion-model")
    assert result.returncode == 1
    assert "face_detector.onnx is missing" in result.stderr
    assert not (tmp_path / "out").exists(), "nothing is written when an input is missing"


def test_missing_emotion_model_fails_unless_allowed(web_copy, tmp_path):
    shutil.rmtree(web_copy / "models" / "emotion", ignore_errors=True)
    result = run_build("--web", str(web_copy), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "model.onnx is missing" in result.stderr and "--allow-missing-emotion-model" in result.stderr
    allowed = run_build("--web", str(web_copy), "--out", str(tmp_path / "out"), "--allow-missing-emotion-model")
    assert allowed.returncode == 0, allowed.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert "emotion" not in manifest["models"] and not [f for f in manifest["files"] if f.startswith("models/emotion/")]


def stand_in_folder(models: Path, model_id: str, meta: dict) -> Path:
    """A model folder whose ONNX bytes are a stand-in (the build checks hashes, it does not parse ONNX)."""
    folder = models / "emotion" / model_id
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(f"stand-in bytes of {model_id}".encode())
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def test_stale_emotion_sidecar_is_rejected(web_copy):
    models = web_copy / "models"
    shutil.rmtree(models / "emotion")
    folder = stand_in_folder(models, "tiny.mine", {"labels": ["a", "b"], "sha256": "0" * 64})
    with pytest.raises(bs.BuildError, match="sidecar is stale"):
        bs.model_files(models, allow_missing_emotion=False)
    (folder / "model.json").write_text(json.dumps({"labels": ["a", "b"], "sha256": sha256(folder / "model.onnx")}))
    files, table = bs.model_files(models, allow_missing_emotion=False)
    assert set(files) == {"models/face_detector.onnx", "models/face_detector_full_range.onnx",
                          "models/emotion/tiny.mine/model.onnx", "models/emotion/tiny.mine/model.json"}
    assert table["face_detector_full_range"] == "models/face_detector_full_range.onnx"
    assert table["emotion_default"] == "tiny.mine" and table["emotion"][0]["labels"] == ["a", "b"]


def test_every_model_folder_is_listed_and_the_smallest_ferplus_is_the_default(web_copy):
    """A model trained on your own classes appears in the catalog after a build, with no code change; of two FER+
    models the one with fewer parameters (faster per face) is the default, whatever the ids' order."""
    models = web_copy / "models"
    shutil.rmtree(models / "emotion")
    for model_id, dataset, labels, params in (("a.mine", "my_faces", ["happy", "peace", "sad"], 10),
                                              ("b.fer2013", "fer2013", list("1234567"), 10),
                                              ("c.ferplus", "ferplus", list("12345678"), 2_480_000),
                                              ("d.ferplus", "ferplus", list("12345678"), 780_000)):
        folder = stand_in_folder(models, model_id, {})
        (folder / "model.json").write_text(json.dumps({"labels": labels, "dataset": dataset, "title": f"T {model_id}",
                                                       "parameters": params, "sha256": sha256(folder / "model.onnx")}))
    _, table = bs.model_files(models, allow_missing_emotion=False)
    assert [(m["id"], m["title"], len(m["labels"])) for m in table["emotion"]] == [
        ("a.mine", "T a.mine", 3), ("b.fer2013", "T b.fer2013", 7), ("c.ferplus", "T c.ferplus", 8), ("d.ferplus", "T d.ferplus", 8)]
    assert table["emotion_default"] == "d.ferplus"
    assert bs.default_model_id([{"id": "x.ferplus", "dataset": "ferplus"}, *table["emotion"]]) == "d.ferplus"  # unknown size last


@pytest.mark.parametrize("model_id, meta, message", [
    ("bad id!", {"labels": ["a"]}, "folder name"),
    ("no.labels", {"labels": []}, "no list of class labels"),
    ("wrong.id", {"labels": ["a"], "id": "other.id"}, "names model 'other.id'"),
])
def test_bad_model_folders_are_named(web_copy, model_id, meta, message):
    models = web_copy / "models"
    stand_in_folder(models, model_id, meta)
    with pytest.raises(bs.BuildError, match=message):
        bs.model_files(models, allow_missing_emotion=False)


def test_webgl_variant_is_checked_against_its_sidecar(web_copy):
    models = web_copy / "models"
    shutil.rmtree(models / "emotion")
    folder = stand_in_folder(models, "tiny.mine", {})
    (folder / "model.webgl.onnx").write_bytes(b"stand-in batch-1 bytes")
    meta = {"labels": ["a", "b"], "sha256": sha256(folder / "model.onnx"),
            "variants": {"webgl": {"file": "model.webgl.onnx", "sha256": "0" * 64, "shipped": True}}}
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(bs.BuildError, match="model.webgl.onnx has sha256"):
        bs.model_files(models, allow_missing_emotion=False)
    meta["variants"]["webgl"]["sha256"] = sha256(folder / "model.webgl.onnx")
    (folder / "model.json").write_text(json.dumps(meta))
    files, table = bs.model_files(models, allow_missing_emotion=False)
    assert "models/emotion/tiny.mine/model.webgl.onnx" in files
    assert table["emotion"][0]["webgl"] == "models/emotion/tiny.mine/model.webgl.onnx"
    (folder / "model.webgl.onnx").unlink()
    with pytest.raises(bs.BuildError, match="model.webgl.onnx is missing"):
        bs.model_files(models, allow_missing_emotion=False)


def test_missing_node_modules_says_npm_ci(tmp_path):
    (tmp_path / "node_modules").mkdir()
    result = run_build("--node-modules", str(tmp_path / "node_modules"), "--out", str(tmp_path / "out"),
                       "--allow-missing-emotion-model")
    assert result.returncode == 1 and "npm ci" in result.stderr


def test_index_html_must_carry_the_servers_csp(web_copy, tmp_path):
    sys.path.insert(0, str(ROOT))
    from serve import CSP

    index = web_copy / "index.html"
    html = index.read_text()
    assert CSP in html, "web/index.html must carry serve.py's CSP as a <meta> tag"
    index.write_text(html.replace("'wasm-unsafe-eval'", ""))
    with pytest.raises(bs.BuildError, match="differs from serve.py's CSP"):
        bs.web_files(web_copy)
    index.write_text(html.replace('http-equiv="Content-Security-Policy"', 'name="x"'))
    with pytest.raises(bs.BuildError, match="has no <meta"):
        bs.web_files(web_copy)


def test_refuses_to_wipe_a_folder_that_is_not_a_build(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(bs.BuildError, match="refusing to delete"):
        bs.build(precious, repo_inputs(), allow_missing_emotion_model=True)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_stale_bytecode_fails_clearly(tmp_path):
    """After a Pyodide or numpy upgrade, the committed bytecode no longer matches its inputs: the build says how to
    re-create it instead of shipping bytecode of other sources."""
    vendor = tmp_path / "vendor"
    shutil.copytree(bs.VENDOR_DIR, vendor)
    record = json.loads((vendor / "pyc/sources.json").read_text())
    record["inputs"]["python_stdlib.zip"] = "0" * 64
    (vendor / "pyc/sources.json").write_text(json.dumps(record))
    with pytest.raises(bs.BuildError, match="precompile_python.py"):
        bs.pyodide_files(ROOT / "node_modules", vendor)
