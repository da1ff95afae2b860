"""The npm package as an app uses it: build the `emotion-lens` tarball (build/build_package.py, from the built site),
install it into the Vite example (examples/vite/, a copy in a temporary folder), type-check the example against
the package's generated declarations (strict TypeScript, declarations checked too), build it with Vite, serve the
output, and run the camera and a photo through it in headless Chromium with the fake webcam.

Run: pytest -m browser tests/test_e2e_package.py
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from fixtures import videos
from fixtures.e2e import LOAD_TIMEOUT_MS, app_server, is_local, launch_app_browser, serve_dir, wait_for  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "vite"
TSC = ROOT / "node_modules" / ".bin" / "tsc"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def run(cmd: list[str], cwd: Path, timeout: int = 600) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)} failed in {cwd}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def package(app_server, tmp_path_factory):  # noqa: F811
    if shutil.which("npm") is None or not TSC.exists():
        pytest.skip("npm and node_modules/.bin/tsc are needed to build and check the package (run npm ci)")
    sys.path.insert(0, str(ROOT / "build"))
    from build_package import build_package, pack

    work = tmp_path_factory.mktemp("package")
    meta = build_package(app_server.dir, work / "package")
    tarball = pack(work / "package", work)
    return {"tarball": tarball, "meta": meta, "site": app_server}


@pytest.fixture(scope="module")
def vite_app(package, tmp_path_factory):
    problem = videos.tools_problem()
    if problem:
        pytest.skip(problem)
    app = tmp_path_factory.mktemp("vite") / "app"
    shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns("node_modules", "dist", "emotion-lens"))
    run(["npm", "ci", "--no-audit", "--no-fund"], app)
    run(["npm", "install", "--no-save", "--no-audit", "--no-fund", str(package["tarball"])], app)
    typecheck = subprocess.run([str(TSC), "-p", "tsconfig.json"], cwd=app, capture_output=True, text=True, timeout=300)
    run(["npx", "vite", "build"], app)
    server, url = serve_dir(app / "dist")
    yield {"dir": app, "url": url, "typecheck": typecheck}
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def page(vite_app, playwright_driver):
    browser = launch_app_browser(playwright_driver, fake_video=videos.y4m(videos.HAPPY))
    tab = browser.new_page()
    tab.goto(vite_app["url"])
    wait_for(tab, "() => /^(Ready|Could not load)/.test(document.getElementById('status').textContent)",
             LOAD_TIMEOUT_MS)
    yield {"page": tab, "browser": browser, "requests_at_ready": len(browser.requests), "url": vite_app["url"]}
    browser.close()


def faces(tab) -> list[dict]:
    return tab.eval_on_selector_all("#faces li", "(ls) => ls.map((l) => ({label: l.dataset.label, text: l.textContent}))")


def test_package_holds_the_engine_its_runtime_and_types(package):
    with tarfile.open(package["tarball"]) as tar:
        names = {n.removeprefix("package/") for n in tar.getnames()}
        manifest = json.load(tar.extractfile("package/runtime/manifest.json"))
        meta = json.load(tar.extractfile("package/package.json"))
    assert package["tarball"].name == f"emotion-lens-{meta['version']}.tgz"
    assert meta["license"] == "MIT" and {"README.md", "LICENSE", "PROVENANCE.md"} <= names
    assert meta["exports"]["."] == {"types": "./types/emotion-lens.d.ts", "default": "./runtime/js/emotion-lens.js"}
    assert {"types/emotion-lens.d.ts", "runtime/js/emotion-lens.js", "runtime/js/lens-worker.js",
            "runtime/js/inference-worker.js"} <= names
    # Every runtime file is listed with its sha256 (the engine checks downloads against it), and nothing else.
    runtime = {n.removeprefix("runtime/") for n in names if n.startswith("runtime/")} - {"manifest.json"}
    assert set(manifest["files"]) == runtime
    site = package["site"].manifest["files"]
    assert all(manifest["files"][f] == site[f] for f in runtime)
    # The demo page's own modules stay out of the package.
    assert not {"runtime/js/ui.js", "runtime/js/session-panel.js", "runtime/index.html"} & names


def test_example_type_checks_against_the_package_declarations(vite_app):
    done = vite_app["typecheck"]
    assert done.returncode == 0, done.stdout + done.stderr


def test_bundled_app_loads_in_a_worker_under_the_csp(page):
    tab, browser = page["page"], page["browser"]
    text = tab.inner_text("#status")
    assert text.startswith("Ready") and "worker thread" in text, text
    assert [line for line in browser.console if "Content Security Policy" in line or "error" in line.lower()] == []
    assert [u for u in browser.requests if not is_local(u, page["url"])] == []
    # The engine itself was bundled; its worker and runtime came from the served runtime folder.
    assert not any("/node_modules/" in u for u in browser.requests)
    assert any(u.endswith("/emotion-lens/js/lens-worker.js") for u in browser.requests)


def test_bundled_app_labels_the_camera_and_a_photo_with_no_request_after_ready(page, package):
    tab, browser = page["page"], page["browser"]
    tab.click("#start")
    wait_for(tab, "() => Number(document.getElementById('faces').dataset.frames) >= 10 && "
                  "document.querySelectorAll('#faces li').length === 1")
    tab.click("#stop")
    tab.set_input_files("#photo", str(videos.still_png(videos.GROUP)))
    wait_for(tab, "() => document.querySelectorAll('#faces li').length === 4")
    if package["site"].real_model:
        tab.set_input_files("#photo", str(videos.still_png(videos.HAPPY)))
        wait_for(tab, "() => document.querySelectorAll('#faces li').length === 1 && "
                      "document.querySelector('#faces li').dataset.label !== undefined")
        assert [f["label"] for f in faces(tab)] in (["happy"], ["happiness"]), faces(tab)
    assert browser.requests[page["requests_at_ready"]:] == []
