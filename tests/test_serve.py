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


def fetch_encoded(url: str, encoding: str = "gzip") -> tuple[dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Accept-Encoding": encoding})
    with urllib.request.urlopen(request, timeout=10) as response:
        return _lower(response.headers), response.read()


def test_gzips_text_javascript_json_and_wasm_like_github_pages(server):
    import gzip

    base, site = server
    for rel in ("app.js", "vendor/pyodide/pyodide.asm.wasm", "manifest.json", "index.html"):
        headers, body = fetch_encoded(base + rel)
        assert headers.get("content-encoding") == "gzip" and headers["vary"] == "Accept-Encoding", rel
        assert int(headers["content-length"]) == len(body) and gzip.decompress(body) == (site / rel).read_bytes()
    for rel in ("models/face_detector.onnx", "vendor/pyodide/python_stdlib.zip", "wheels/x-0.1-py3-none-any.whl"):
        headers, body = fetch_encoded(base + rel)
        assert "content-encoding" not in headers and body == (site / rel).read_bytes(), rel
    headers, body = fetch_encoded(base + "app.js", "identity")  # a client that does not accept gzip
    assert "content-encoding" not in headers and body == (site / "app.js").read_bytes()


def test_no_gzip_and_an_emulated_link(tmp_path):
    """--no-gzip sends files as they are; --link delays every response by its round trip and paces it to its
    bandwidth; the server counts the bytes it sent."""
    import threading
    import time

    from serve import Link, make_server

    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "big.js").write_bytes(bytes(range(256)) * 1000)  # 256 KB of text-typed content: gzip would shrink it
    server = make_server(tmp_path, port=0, quiet=True, gzip=False, link=Link.parse("10mbit,50ms"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        t0 = time.perf_counter()
        headers, body = fetch_encoded(url + "index.html")
        assert time.perf_counter() - t0 >= 0.05 and "content-encoding" not in headers
        t0 = time.perf_counter()
        headers, body = fetch_encoded(url + "big.js")
        # 256,000 bytes at 10 Mbit/s take 0.2 s (+ the 50 ms round trip)
        assert time.perf_counter() - t0 >= 0.25 and "content-encoding" not in headers and len(body) == 256_000
        assert server.bytes_sent == 256_000 + len("<!doctype html>")
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(Exception, match="20mbit,40ms"):
        Link.parse("fast")
