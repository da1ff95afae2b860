"""serve.py, run as `make serve` runs it: MIME types and the security headers on every response."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from serve import CSP  # noqa: E402

FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "vendor/pyodide/pyodide.mjs": "text/javascript; charset=utf-8",
    "vendor/pyodide/pyodide.asm.wasm": "application/wasm",
    "manifest.json": "application/json",
    "manifest.webmanifest": "application/manifest+json",
    "icons/icon-192.png": "image/png",
    "style.css": "text/css; charset=utf-8",
    "models/face_detector.onnx": "application/octet-stream",
    "wheels/x-0.1-py3-none-any.whl": "application/octet-stream",
    "vendor/pyodide/python_stdlib.zip": "application/octet-stream",
}

EXPECTED_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self)",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    site = tmp_path_factory.mktemp("served")
    for i, rel in enumerate(FILES):
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"file {i}: {rel}\n".encode())
    proc = subprocess.Popen([sys.executable, str(ROOT / "serve.py"), "--dir", str(site), "--port", "0", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, f"unexpected start line {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        yield f"http://127.0.0.1:{match.group(1)}/", site
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _lower(headers) -> dict[str, str]:
    """HTTP header names are case-insensitive (the stdlib sends "Content-type")."""
    return {k.lower(): v for k, v in headers.items()}


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, _lower(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, _lower(err.headers), err.read()


@pytest.mark.parametrize("rel", list(FILES))
def test_mime_type_headers_and_body(server, rel):
    base, site = server
    status, headers, body = fetch(base + rel)
    assert status == 200
    assert headers["content-type"] == FILES[rel]
    assert body == (site / rel).read_bytes()
    for name, value in EXPECTED_HEADERS.items():
        assert headers.get(name.lower()) == value, name


def test_root_serves_index_and_errors_carry_the_headers_too(server):
    base, site = server
    status, headers, body = fetch(base)
    assert status == 200 and body == (site / "index.html").read_bytes()
    status, headers, _ = fetch(base + "no/such/file.js")
    assert status == 404
    assert headers.get("cross-origin-embedder-policy") == "require-corp"
    assert headers.get("content-security-policy") == CSP


def test_files_outside_the_site_are_not_served(server):
    base, site = server
    (site.parent / "secret.txt").write_text("outside")
    status, _, body = fetch(base + "../secret.txt")
    assert status == 404 and b"outside" not in body
    status, _, body = fetch(base + "%2e%2e/secret.txt")
    assert status == 404 and b"outside" not in body


def test_refuses_a_folder_without_index_html(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "serve.py"), "--dir", str(tmp_path), "--port", "0"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "build the site first" in result.stderr
