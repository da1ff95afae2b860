"""The engine's side of the site's service worker (web/js/sw-control.js), run in node with a stand-in
`navigator.serviceWorker`: the shell is asked of the site's own worker only (an embedding app's worker would never
answer, and the engine's ready waits for the answer), the answer resolves it, and a worker that does not answer costs
at most the time limit. (The real worker runs in the browser tests: tests/test_e2e_offline.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE_WORKER = "https://example.test/app/sw.js"

RUN = """
import { serviceWorkerStoreShell } from '%s';
const [scriptURL, answers] = JSON.parse(process.argv[1]);
const asked = [];
globalThis.navigator = { serviceWorker: { controller: scriptURL === null ? null : {
  scriptURL,
  postMessage(message, [port]) {
    asked.push(message.type);
    if (answers) port.postMessage('stored');
  },
} } };
const started = performance.now();
const stored = await serviceWorkerStoreShell('%s', 200);
console.log(JSON.stringify({ stored, asked, ms: performance.now() - started }));
""" % ((ROOT / "web/js/sw-control.js").as_uri(), SITE_WORKER)


def run(script_url: str | None, answers: bool) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    done = subprocess.run([node, "--input-type=module", "-e", RUN, json.dumps([script_url, answers])],
                          capture_output=True, text=True, check=True, timeout=30)
    return json.loads(done.stdout)


def test_the_site_worker_is_asked_and_its_answer_resolves():
    out = run(SITE_WORKER, answers=True)
    assert out["stored"] is True and out["asked"] == ["emotion-lens:store-shell"]
    assert out["ms"] < 150, out


def test_an_embedding_apps_worker_is_not_asked_and_costs_no_wait():
    out = run("https://example.test/app/their-sw.js", answers=True)
    assert out == {**out, "stored": False, "asked": []}
    assert out["ms"] < 150, out


def test_no_worker_costs_no_wait():
    out = run(None, answers=False)
    assert out["stored"] is False and out["asked"] == [] and out["ms"] < 150


def test_a_worker_that_never_answers_costs_at_most_the_time_limit():
    out = run(SITE_WORKER, answers=False)
    assert out["stored"] is False and out["asked"] == ["emotion-lens:store-shell"]
    assert 150 <= out["ms"] < 1000, out
