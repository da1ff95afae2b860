"""Serve the built static site locally with the headers GitHub Pages cannot send.

Usage: python serve.py [--port 8000] [--dir dist/site] [--host 127.0.0.1] [--no-gzip] [--link 20mbit,40ms]

Standard library only. Cross-origin isolation (COOP + COEP) enables wasm threads; the
Content-Security-Policy is the same one index.html carries as a <meta> tag.
Like GitHub Pages, it gzips text, JavaScript, JSON and WebAssembly for browsers that accept it (not the
octet-stream files: models, wheels, the zipped standard library). --link emulates a network link: every response
waits one round trip, and all of them share the link's bandwidth.
"""
from __future__ import annotations

import argparse
import functools
import gzip
import http.server
import re
import sys
import threading
import time
from pathlib import Path

# One policy for the header here and the <meta> tag in web/index.html (build_site.py checks they match).
# 'wasm-unsafe-eval' is required to compile WebAssembly; without it Pyodide hangs and ort rejects.
CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; "
    "img-src 'self' data: blob:; media-src 'self' blob: mediastream:; style-src 'self'; "
    "object-src 'none'; base-uri 'self'"
)

SECURITY_HEADERS: dict[str, str] = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self)",
}

# Explicit types: the platform's mimetypes table varies (and .mjs/.wasm are missing on some systems).
MIME_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
    ".whl": "application/octet-stream",
    ".zip": "application/octet-stream",
    ".gz": "application/gzip",  # as GitHub Pages: the file itself, no Content-Encoding
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".y4m": "application/octet-stream",
    "": "application/octet-stream",
}


# What GitHub Pages compresses on the fly (text, JavaScript, JSON and WebAssembly; issue 23); binary octet-stream
# files (models, wheels, the zipped standard library) are sent as they are.
GZIP_TYPES = ("text/", "application/json", "application/manifest+json", "application/wasm", "image/svg+xml")
GZIP_LEVEL = 6


class Link:
    """An emulated network link shared by every response: `rtt_s` before each response, then at most `bits_per_s`
    for all of them together."""

    def __init__(self, bits_per_s: float, rtt_s: float) -> None:
        self.bytes_per_s = bits_per_s / 8
        self.rtt_s = rtt_s
        self._free_at = 0.0  # when the link has sent everything queued so far
        self._lock = threading.Lock()

    def send(self, write, data: bytes, chunk: int = 16384) -> None:
        for i in range(0, len(data), chunk):
            part = data[i : i + chunk]
            with self._lock:
                self._free_at = max(self._free_at, time.monotonic()) + len(part) / self.bytes_per_s
                done = self._free_at
            time.sleep(max(0.0, done - time.monotonic()))
            write(part)

    @staticmethod
    def parse(text: str) -> "Link":
        """'20mbit,40ms' -> Link(20e6, 0.040)."""
        found = re.fullmatch(r"\s*([\d.]+)\s*mbit\s*,\s*([\d.]+)\s*ms\s*", text.lower())
        if not found:
            raise argparse.ArgumentTypeError(f"--link takes e.g. 20mbit,40ms, not {text!r}")
        return Link(float(found.group(1)) * 1e6, float(found.group(2)) / 1000)


def content_type(path: str | Path) -> str:
    """The Content-Type the site serves a file with (by its suffix)."""
    return MIME_TYPES.get(Path(path).suffix.lower(), "application/octet-stream")


def host_gzips(path: str | Path) -> bool:
    """Whether a host that compresses like GitHub Pages sends this file gzipped."""
    return content_type(path).startswith(GZIP_TYPES)


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with fixed MIME types and the site's security headers; gzip and an emulated link where the
    server is set up for them (make_server)."""

    extensions_map = MIME_TYPES

    def guess_type(self, path: str) -> str:  # type: ignore[override]
        return content_type(path)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = Path(self.translate_path(self.path))
        if path.is_dir() and self.path.split("?")[0].endswith("/"):
            path = path / "index.html"
        link = getattr(self.server, "link", None)
        if link:
            time.sleep(link.rtt_s)
        if not path.is_file():
            super().do_GET()  # directory redirects and listings, 404
            return
        compress = (getattr(self.server, "gzip", False) and host_gzips(path)
                    and "gzip" in self.headers.get("Accept-Encoding", ""))
        data = gzipped(path) if compress else path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", content_type(path))
        self.send_header("Content-Length", str(len(data)))
        if compress:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Vary", "Accept-Encoding")
        self.end_headers()
        count_sent(self.server, len(data))
        if link:
            link.send(self.wfile.write, data)
        else:
            self.wfile.write(data)

    def end_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        # Always revalidate: a rebuilt site must never mix old and new files.
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        if not getattr(self.server, "quiet", False):
            super().log_message(format, *args)


@functools.lru_cache(maxsize=256)
def _gzip(path: Path, mtime_ns: int, size: int) -> bytes:
    return gzip.compress(path.read_bytes(), compresslevel=GZIP_LEVEL, mtime=0)


def gzipped(path: Path) -> bytes:
    """The file at `path` gzipped, compressed once per version of the file."""
    st = path.stat()
    return _gzip(path, st.st_mtime_ns, st.st_size)


def count_sent(server, n: int) -> None:
    with server.sent_lock:
        server.bytes_sent += n


def make_server(directory: Path, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False,
                handler_class: type[SiteHandler] = SiteHandler, gzip: bool = True,
                link: Link | None = None) -> http.server.ThreadingHTTPServer:
    """A ready (not yet serving) server; port 0 picks a free one (see server.server_address). `bytes_sent` counts
    the response bodies sent (after compression): the bytes on the wire, headers aside."""
    handler = functools.partial(handler_class, directory=str(directory))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.quiet = quiet  # type: ignore[attr-defined]
    server.gzip = gzip  # type: ignore[attr-defined]
    server.link = link  # type: ignore[attr-defined]
    server.bytes_sent = 0  # type: ignore[attr-defined]
    server.sent_lock = threading.Lock()  # type: ignore[attr-defined]
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the built site with COOP/COEP/CSP headers.")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent / "dist" / "site")
    parser.add_argument("--quiet", action="store_true", help="no request log")
    parser.add_argument("--no-gzip", action="store_true", help="send every file as it is (a host that does not compress)")
    parser.add_argument("--link", type=Link.parse, help="emulate a network link, e.g. 20mbit,40ms")
    args = parser.parse_args(argv)
    if not (args.dir / "index.html").is_file():
        print(f"{args.dir}/index.html not found: build the site first (make site, or python build/build_site.py).",
              file=sys.stderr)
        return 2
    server = make_server(args.dir, args.host, args.port, args.quiet, gzip=not args.no_gzip, link=args.link)
    host, port = server.server_address[:2]
    # Camera access needs a secure context: http://localhost and http://127.0.0.1 are, a LAN address is not.
    print(f"Serving {args.dir} at http://{host}:{port}/  (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
