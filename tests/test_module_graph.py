"""The page's and the engine worker's static module graphs are named up front, so the browser fetches each graph in
one round instead of one import level at a time: index.html preloads app.js's whole graph (modulepreload), and
js/lens-worker.js imports every module of the pipeline's graph. These tests keep both lists complete and exact."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

WEB = Path(__file__).resolve().parents[1] / "web"
# Static imports and re-exports: `import x from './a.js'`, `import './a.js'`, `export { y } from './a.js'`.
STATIC_IMPORT = re.compile(r"""^\s*(?:import|export)\b[^'";]*?\bfrom\s*['"](\.[^'"]+)['"]|^\s*import\s*['"](\.[^'"]+)['"]""", re.M)


def static_imports(module: Path) -> set[Path]:
    return {(module.parent / (m.group(1) or m.group(2))).resolve() for m in STATIC_IMPORT.finditer(module.read_text())}


def module_graph(entry: Path) -> set[str]:
    """Every module `entry` reaches through static imports (not `entry` itself), as paths relative to web/."""
    seen: set[Path] = set()
    todo = [entry.resolve()]
    while todo:
        for dep in static_imports(todo.pop()):
            assert dep.is_file(), f"{dep} is imported but missing"
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return {p.relative_to(WEB).as_posix() for p in seen}


class _Preloads(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "link" and a.get("rel") == "modulepreload":
            self.hrefs.append(a["href"] or "")


def test_the_parser_sees_nested_imports() -> None:
    graph = module_graph(WEB / "app.js")
    assert {"js/emotion-lens.js", "js/errors.js", "js/sw-control.js"} <= graph  # errors.js only through emotion-lens.js
    assert "app.js" not in graph and not any("lens-pipeline" in m for m in graph)  # loaded dynamically, by the worker


def test_index_html_preloads_exactly_app_js_module_graph() -> None:
    parser = _Preloads()
    parser.feed((WEB / "index.html").read_text())
    assert len(parser.hrefs) == len(set(parser.hrefs)), "a module is preloaded twice"
    assert set(parser.hrefs) == module_graph(WEB / "app.js")


def test_the_engine_worker_names_the_whole_pipeline_graph() -> None:
    worker = WEB / "js" / "lens-worker.js"
    named = {p.relative_to(WEB).as_posix() for p in static_imports(worker)}
    assert named == module_graph(worker), "js/lens-worker.js should import every module of the pipeline's graph"
