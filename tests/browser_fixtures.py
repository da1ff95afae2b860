"""Shared fixtures for tests in real headless Chromium (pulled in by tests/conftest.py).

- `built_site` (session): the site built by build/build_site.py into a temporary folder, plus the test pages
  of tests/fixtures/boot/ copied to <site>/__test__/ (outside manifest.json, never deployed).
- `site_server` (session): that folder served by serve.py's handler (same headers as `make serve`) on a free
  loopback port; `site_server.url` ends with "/".
- `browser_context` (factory): `browser_context(*extra_args, fake_video=None, fake_ui=True)` launches
  /usr/bin/chromium (Debian package; Playwright's own browser download is not used) with a fresh profile
  and returns a Playwright BrowserContext. `fake_video` (a .y4m path) becomes the fake webcam;
  `fake_ui=False` leaves out --use-fake-ui-for-media-stream so getUserMedia is denied (NotAllowedError).
  Each context records `context.console_lines` (list[str]) and `context.requested_urls` (list[str]).

Tests using these skip with a reason when Chromium, Playwright or node_modules are missing.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
BOOT_PAGES = Path(__file__).resolve().parent / "fixtures" / "boot"

# From docs in shared/notes/browser-stack.md: quiet, offline-friendly, reproducible headless runs.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-unsafe-swiftshader",
)
WEBGPU_ARGS = ("--enable-unsafe-webgpu",)

sys.path.insert(0, str(ROOT))


def load_build_site() -> ModuleType:
    """build/build_site.py as a module (by path: a pip-installed `build` package would shadow the folder)."""
    if "build_site" not in sys.modules:
        spec = importlib.util.spec_from_file_location("build_site", ROOT / "build" / "build_site.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["build_site"] = module
        spec.loader.exec_module(module)
    return sys.modules["build_site"]


def default_model_dir() -> Path | None:
    """web/models/emotion/<id>/ of the model the built site loads by default (build_site's rule); None without one."""
    import json

    folders = sorted(p.parent for p in (ROOT / "web/models/emotion").glob("*/model.onnx") if (p.parent / "model.json").is_file())
    if not folders:
        return None
    sidecars = {f.name: json.loads((f / "model.json").read_text()) for f in folders}
    catalog = [{"id": name, "dataset": s.get("dataset"), "parameters": s.get("parameters")} for name, s in sidecars.items()]
    return ROOT / "web/models/emotion" / load_build_site().default_model_id(catalog)


def browser_problem() -> str | None:
    """Why browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} missing (make browser-deps, or apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright not installed (pip install -e '.[test]')"
    return None


def site_problem() -> str | None:
    """Why the site cannot be built here, or None."""
    if not (ROOT / "node_modules" / "pyodide" / "pyodide.mjs").is_file():
        return "node_modules missing (run npm ci)"
    if not (ROOT / "web" / "index.html").is_file():
        return "web/index.html missing"
    return None


@dataclass(frozen=True)
class BuiltSite:
    dir: Path
    manifest: dict
    has_emotion_model: bool


@dataclass(frozen=True)
class SiteServer:
    url: str
    dir: Path
    manifest: dict
    has_emotion_model: bool


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> BuiltSite:
    problem = site_problem()
    if problem:
        pytest.skip(problem)
    build_site = load_build_site()
    has_emotion = any((ROOT / "web" / "models" / "emotion").glob("*/model.onnx"))
    out = tmp_path_factory.mktemp("site") / "site"
    inputs = build_site.Inputs(web=ROOT / "web", node_modules=ROOT / "node_modules", py_src=ROOT / "py_src",
                               pyproject=ROOT / "pyproject.toml", vendor=build_site.VENDOR_DIR)
    # Until the trained model is committed, browser tests run on a site without it (and say so).
    manifest = build_site.build(out, inputs, allow_missing_emotion_model=not has_emotion)
    shutil.copytree(BOOT_PAGES, out / "__test__", ignore=shutil.ignore_patterns("__pycache__"))
    return BuiltSite(dir=out, manifest=manifest, has_emotion_model=has_emotion)


@pytest.fixture(scope="session")
def site_server(built_site: BuiltSite) -> Iterator[SiteServer]:
    from serve import make_server

    server = make_server(built_site.dir, "127.0.0.1", 0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield SiteServer(url=f"http://{host}:{port}/", dir=built_site.dir, manifest=built_site.manifest,
                         has_emotion_model=built_site.has_emotion_model)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[object]:
    problem = browser_problem()
    if problem:
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture
def browser_context(playwright_driver) -> Iterator[Callable[..., object]]:
    contexts = []
    profiles: list[tempfile.TemporaryDirectory] = []

    def launch(*extra_args: str, fake_video: Path | None = None, fake_ui: bool = True, **context_options):
        args = list(CHROMIUM_ARGS)
        if fake_video is not None:
            args += ["--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={fake_video}"]
            if fake_ui:
                args.append("--use-fake-ui-for-media-stream")
        args += list(extra_args)
        profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        profiles.append(profile)
        context = playwright_driver.chromium.launch_persistent_context(
            profile.name, executable_path=str(CHROMIUM), headless=True, args=args, **context_options)
        context.console_lines = []
        context.requested_urls = []
        context.on("console", lambda msg: context.console_lines.append(f"{msg.type}: {msg.text}"))
        context.on("request", lambda req: context.requested_urls.append(req.url))
        contexts.append(context)
        return context

    yield launch
    for context in contexts:
        context.close()
    for profile in profiles:
        profile.cleanup()


def chromium_version() -> str:
    """e.g. 'Chromium 156.0.8078.79 ...', for reports."""
    return subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True).stdout.strip()
