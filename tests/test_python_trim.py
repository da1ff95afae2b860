"""The browser's Python is trimmed to what the runtime uses (build/precompile_python.py): Pyodide's standard library
and the numpy wheel ship only the packages emotion_runtime's start and per-frame API load. These tests fail when the
runtime starts to need something the trimmed archives lack; the fix is `python build/precompile_python.py`."""
from __future__ import annotations

import ast
import gzip
import shutil
import sys
import types
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "build"))
import precompile_python as precompile  # noqa: E402

PY_SRC = ROOT / "py_src" / "emotion_runtime"
TRIMMED = precompile.OUT_DIR


def members(archive: Path) -> set[str]:
    with zipfile.ZipFile(archive) as zf:
        return set(zf.namelist())


def has_module(names: set[str], module: str) -> bool:
    """Whether an archive holds `module` ('json', 'json.decoder') as source, bytecode or package."""
    path = module.replace(".", "/")
    return bool({f"{path}.py", f"{path}.pyc", f"{path}/__init__.py", f"{path}/__init__.pyc"} & names)


def runtime_imports() -> set[str]:
    """Absolute modules emotion_runtime imports anywhere (module level or in a function)."""
    found = set()
    for source in PY_SRC.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
    return found


def numpy_attributes() -> set[str]:
    """`np.<name>` attribute names used by emotion_runtime (subpackages such as np.linalg among them)."""
    return {node.attr for source in PY_SRC.glob("*.py") for node in ast.walk(ast.parse(source.read_text()))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "np"}


@pytest.fixture(scope="module")
def archives():
    stdlib = precompile.PYODIDE / "python_stdlib.zip"
    if not stdlib.is_file():
        pytest.skip("node_modules/pyodide absent (run npm ci)")
    wheel = precompile.numpy_entry()["file_name"]
    return {"stdlib": (members(stdlib), members(TRIMMED / "python_stdlib.zip")),
            "numpy": (members(precompile.VENDOR_DIR / wheel), members(TRIMMED / wheel))}


def test_trimmed_archives_are_smaller_and_keep_the_core(archives):
    # Compiled but untrimmed they were 3.97 MB and 3.58 MB (2026-12-05); trimmed with docstrings 1.55 and 1.52 MB.
    stdlib = (TRIMMED / "python_stdlib.zip").read_bytes()
    assert len(gzip.compress(stdlib, 9)) < 1.2e6  # the site ships it gzipped as a whole (build_site.precompressed)
    assert (TRIMMED / precompile.numpy_entry()["file_name"]).stat().st_size < 1.3e6  # 2.25 MB with LAPACK
    full, trimmed = archives["stdlib"]
    for module in ("encodings.utf_8", "json", "dataclasses", "typing", "traceback", "pyodide", "_pyodide"):
        assert has_module(trimmed, module), module
    assert not has_module(trimmed, "email") and not has_module(trimmed, "unittest")
    full, trimmed = archives["numpy"]
    assert has_module(trimmed, "numpy._core") and has_module(trimmed, "numpy.linalg")
    assert not has_module(trimmed, "numpy.random") and not has_module(trimmed, "numpy.f2py")
    assert not [m for m in trimmed if "/tests/" in m]


def test_bytecode_has_no_docstrings_and_the_standard_library_is_stored():
    """Compiled as `python -OO` (docstrings are about a fifth of numpy's bytes; the page runs Python with
    PYTHONOPTIMIZE=2 to match); the standard library's members stored, so its gzipped copy compresses across them."""
    with zipfile.ZipFile(TRIMMED / "python_stdlib.zip") as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
        assert b"JSON (JavaScript Object Notation)" not in zf.read("json/__init__.pyc")  # the module's docstring
        assert b"Format a stack trace and the exception information" not in zf.read("traceback.pyc")
    with zipfile.ZipFile(TRIMMED / precompile.numpy_entry()["file_name"]) as zf:
        assert b"Take elements from an array along an axis" not in zf.read("numpy/_core/fromnumeric.pyc")
    assert precompile.python_env() == {"PYTHONOPTIMIZE": "2"}  # what web/js/runtime.js starts Python with


def test_numpy_linalg_lapack_is_a_placeholder_that_says_what_is_missing(archives):
    """numpy.linalg's LAPACK kernels (1.9 MB of WebAssembly that `import numpy` loads) ship as a Python placeholder:
    the runtime never calls numpy.linalg, and a call raises an AttributeError that says why."""
    _, trimmed = archives["numpy"]
    assert "numpy/linalg/_umath_linalg.pyc" in trimmed
    assert not [m for m in trimmed if m.startswith("numpy/linalg/") and m.endswith(".so")]
    assert "linalg" not in numpy_attributes(), "emotion_runtime calls numpy.linalg: drop the placeholder"
    placeholder = types.ModuleType("numpy.linalg._umath_linalg")
    exec(precompile.LINALG_PLACEHOLDER, placeholder.__dict__)
    assert not hasattr(placeholder, "__path__") and getattr(placeholder, "inv", None) is None
    with pytest.raises(AttributeError, match=r"numpy.linalg \(det\) is not available here"):
        placeholder.det  # noqa: B018 - the access is the test


def test_every_standard_module_the_runtime_imports_is_kept(archives):
    full, trimmed = archives["stdlib"]
    # A module outside Pyodide's zip is built into its interpreter (sys, math, ...) or is numpy / the runtime itself.
    needed = {m for m in runtime_imports() if has_module(full, m)}
    assert needed, "no standard-library import found in py_src: the check itself is broken"
    assert [m for m in needed if not has_module(trimmed, m)] == [], "run python build/precompile_python.py"


def test_every_numpy_subpackage_the_runtime_names_is_kept(archives):
    full, trimmed = archives["numpy"]
    subpackages = {m.split("/")[1] for m in full if m.startswith("numpy/") and m.count("/") >= 2}
    used = numpy_attributes() & subpackages
    assert [s for s in used if not has_module(trimmed, f"numpy.{s}")] == [], "run python build/precompile_python.py"


@pytest.mark.slow
def test_a_fresh_census_of_the_runtime_finds_nothing_missing(archives):
    """Start Pyodide in node as the page does and run the runtime's whole per-frame API (the build's own census):
    every module it loads must be in the shipped archives."""
    if shutil.which("node") is None:
        pytest.skip("node is needed to run Pyodide")
    used = precompile.used_modules(precompile.VENDOR_DIR / precompile.numpy_entry()["file_name"])
    _, stdlib = archives["stdlib"]
    _, numpy = archives["numpy"]
    compiled = lambda m: m + "c" if m.endswith(".py") else m  # noqa: E731 - the archives hold bytecode
    assert [m for m in used["stdlib"] if compiled(m) not in stdlib] == []
    assert [m for m in used["numpy"] if compiled(m) not in numpy] == []
    # ... and nothing else is shipped: the trim is by module, encodings aside (codecs are found by name).
    loaded = {compiled(m) for m in used["stdlib"] + used["numpy"]}
    extra = [m for m in stdlib if m.endswith(".pyc") and m.split("/")[0] not in used["whole"] and m not in loaded]
    assert extra == [] and "encodings" in used["whole"]
    assert [m for m in numpy if m.startswith("numpy/") and m not in loaded
            and m.split(".cpython-")[0] not in used["placeholders"] and not m.endswith("_umath_linalg.pyc")] == []
