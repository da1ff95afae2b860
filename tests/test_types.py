"""The JavaScript's JSDoc is type-checked (`tsc -p tsconfig.json`: web/js, the demo page, the example), so the
declarations the npm package ships (generated from the same JSDoc, build/build_package.py) say what the code does."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TSC = ROOT / "node_modules" / ".bin" / "tsc"

pytestmark = pytest.mark.skipif(not TSC.exists(), reason="node_modules/.bin/tsc absent (run npm ci)")


def tsc(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(TSC), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_web_javascript_type_checks():
    done = tsc("-p", "tsconfig.json")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_checker_rejects_a_wrong_engine_option(tmp_path):
    """The same settings catch a misuse of the engine's API (so the check above can fail)."""
    config = json.loads("\n".join(line for line in (ROOT / "tsconfig.json").read_text().splitlines()
                                  if not line.lstrip().startswith("//")))
    (tmp_path / "misuse.js").write_text(
        f"import {{ createEmotionLens, EVENTS }} from '{ROOT / 'web/js/emotion-lens.js'}';\n"
        "const lens = createEmotionLens({ maxFaces: 'four' });\n"
        "lens.addEventListener(EVENTS.RESULT, (e) => e.detail.faces[0].nonsense);\n")
    config["include"] = ["misuse.js", str(ROOT / "types/browser-globals.d.ts")]
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    done = tsc("-p", "tsconfig.json", cwd=tmp_path)
    assert done.returncode != 0
    assert "misuse.js(2," in done.stdout and "'string' is not assignable to type 'number'" in done.stdout, done.stdout
    assert "misuse.js(3," in done.stdout and "nonsense" in done.stdout, done.stdout
