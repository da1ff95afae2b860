"""Serve the built static site locally with the headers GitHub Pages cannot send.

Usage: python serve.py [--port 8000] [--dir dist/site] [--host 127.0.0.1]

Standard library only. Cross-origin isolation (COOP + COEP) enables wasm threads; the
Content-Security-Policy is the same one index.html carries as a <meta> tag.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import sys
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


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with fixed MIME types and the site's security headers."""

    extensions_map = MIME_TYPES

    def guess_type(self, path: str) -> str:  # type: ignore[override]
        return MIME_TYPES.get(Path(path).suffix.lower(), "application/octet-stream")

    def end_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        # Always revalidate: a rebuilt site must never mix old and new files.
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        if not getattr(self.server, "quiet", False):
            super().log_message(format, *args)


def make_server(directory: Path, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False,
                handler_class: type[SiteHandler] = SiteHandler) -> http.server.ThreadingHTTPServer:
    """A ready (not yet serving) server; port 0 picks a free one (see server.server_address)."""
    handler = functools.partial(handler_class, directory=str(directory))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.quiet = quiet  # type: ignore[attr-defined]
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the built site with COOP/COEP/CSP headers.")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent / "dist" / "site")
    parser.add_argument("--quiet", action="store_true", help="no request log")
    args = parser.parse_args(argv)
    if not (args.dir / "index.html").is_file():
        print(f"{args.dir}/index.html not found: build the site first (make site, or python build/build_site.py).",
              file=sys.stderr)
        return 2
    server = make_server(args.dir, args.host, args.port, args.quiet)
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
