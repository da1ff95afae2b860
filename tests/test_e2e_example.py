"""End to end in headless Chromium: the engine's minimal example page (web/example/) and the engine's API
(web/js/emotion-lens.js) as an embedding page uses it.

- the example page loads under the site's CSP, lists the face of a photo and of the camera, and fetches nothing
  from elsewhere;
- a second engine created in that page checks the API: config validated once (codes, frozen defaults), every
  input kind (ImageBitmap, ImageData, canvas, Blob, video element) gives the same faces, the face cap, newest frame
  wins while busy (the replaced one resolves null and is counted), typed errors, dispose() ending the worker.
Run: pytest -m browser tests/test_e2e_example.py
"""

from __future__ import annotations

import base64

import pytest

from fixtures import videos
from fixtures.e2e import (
    LOAD_TIMEOUT_MS,
    app_server,  # noqa: F401 - fixture
    is_local,
    launch_app_browser,
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def example(playwright_driver, app_server):  # noqa: F811
    problem = videos.tools_problem()
    if problem:
        pytest.skip(problem)
    browser = launch_app_browser(playwright_driver, fake_video=videos.y4m(videos.HAPPY))
    page = browser.new_page()
    page.goto(app_server.url + "example/")
    wait_for(page, "() => /^(Ready|Could not load)/.test(document.getElementById('status').textContent)",
             LOAD_TIMEOUT_MS)
    yield {"page": page, "browser": browser, "app": app_server}
    browser.close()


def faces(page) -> list[dict]:
    return page.eval_on_selector_all("#faces li", "(ls) => ls.map((l) => ({label: l.dataset.label, text: l.textContent}))")


def test_example_page_loads_in_a_worker_under_the_csp(example):
    page, browser = example["page"], example["browser"]
    text = page.inner_text("#status")
    assert text.startswith("Ready") and "worker thread" in text, text
    assert [line for line in browser.console if "Content Security Policy" in line] == []
    assert [u for u in browser.requests if not is_local(u, example["app"].url)] == []


def test_example_page_photo(example):
    page = example["page"]
    page.set_input_files("#photo", str(videos.still_png(videos.HAPPY)))
    wait_for(page, "() => document.querySelectorAll('#faces li').length === 1")
    (face,) = faces(page)
    assert face["text"].startswith("Face ")
    if example["app"].real_model:
        assert face["label"] in ("happy", "happiness"), face


def test_example_page_camera(example):
    page = example["page"]
    page.click("#start")
    wait_for(page, "() => Number(document.getElementById('faces').dataset.frames) >= 10 && "
                   "document.querySelectorAll('#faces li').length === 1")
    frames = int(page.get_attribute("#faces", "data-frames"))
    page.click("#stop")
    page.wait_for_timeout(300)  # a frame in flight may still land
    settled = int(page.get_attribute("#faces", "data-frames"))
    page.wait_for_timeout(700)
    assert int(page.get_attribute("#faces", "data-frames")) == settled >= frames


ENGINE_API_CHECK = """async ([pngBase64, groupBase64]) => {
  const m = await import('../js/emotion-lens.js');
  const out = { configErrors: {} };
  for (const [name, config] of Object.entries({
    maxFaces: { maxFaces: 0 }, unknown: { colour: 'red' }, ep: { executionProviders: ['cuda'] },
    detector: { detector: { video: 'long_range' } }, detectEvery: { detectEvery: 0 },
    smoothing: { smoothing: { mode: 'kalman' } } })) {
    try { m.createEmotionLens(config); out.configErrors[name] = null; } catch (e) { out.configErrors[name] = e.code; }
  }
  out.frozen = Object.isFrozen(m.DEFAULTS) && Object.isFrozen(m.DEFAULTS.maxSide) && Object.isFrozen(m.EVENTS);
  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const blob = new Blob([bytes(pngBase64)], { type: 'image/png' });
  const group = new Blob([bytes(groupBase64)], { type: 'image/png' });

  const lens = m.createEmotionLens({ executionProviders: ['wasm'], maxFaces: 2, smoothing: { mode: 'none', k: 1 } });
  const progress = [];
  lens.addEventListener(m.EVENTS.PROGRESS, (e) => progress.push(e.detail));
  let events = 0;
  lens.addEventListener(m.EVENTS.RESULT, () => { events += 1; });
  const infoEvents = [];
  lens.addEventListener(m.EVENTS.INFO, (e) => infoEvents.push(e.detail.ep));
  out.stateBefore = lens.state;
  try { await lens.detect(blob); } catch (e) { out.beforeLoad = e.code; }
  const info = await lens.load();
  out.info = { thread: info.backend.thread, ep: info.ep, smoothing: info.smoothing, labels: info.model.labels };
  out.progressSteps = [...new Set(progress.map((p) => p.step))];
  out.progressKeys = [...new Set(progress.flatMap((p) => Object.keys(p)))].sort();

  const bitmap = await createImageBitmap(blob);
  const canvas = document.createElement('canvas');
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(bitmap, 0, 0);
  const imageData = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const video = document.createElement('video');
  video.muted = true;
  video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
  await video.play();
  out.inputs = {};
  out.attemptsAtReady = info.epAttempts.detectorFullRange;
  for (const [name, source] of Object.entries({ bitmap, imageData, canvas, blob, video })) {
    await lens.reset();
    const r = await lens.detect(source);
    out.inputs[name] = { kind: r.kind, detector: r.detector, width: r.width, height: r.height,
                         boxes: r.faces.map((f) => f.box), detectorRan: r.detectorRan,
                         probs: r.faces.map((f) => f.probs) };
  }
  // The camera's next frame: the still face is kept from the last detection (DEFAULTS.detectEvery 3).
  const again = await lens.detect(video);
  out.videoAgain = { detectorRan: again.detectorRan, faces: again.faces.length, detect: again.timings.detect };
  out.bitmapDetached = bitmap.width === 0;
  out.infoEvents = infoEvents;
  out.epAfterPhoto = lens.info.ep;
  out.attemptsAfterPhoto = lens.info.epAttempts.detectorFullRange.map((a) => a.ep);
  for (const t of video.srcObject.getTracks()) t.stop();

  await lens.reset();
  const g = await lens.detect(group);
  out.group = { detected: g.detected, faces: g.faces.length, keys: Object.keys(g.faces[0]).sort(),
                timings: Object.keys(g.timings).sort(), detector: g.detector, detectorRan: g.detectorRan };
  // The same photo through the short-range detector, chosen per call and then for every photo.
  await lens.reset();
  const gs = await lens.detect(group, { detector: 'short_range' });
  out.groupShort = { detector: gs.detector, detected: gs.detected };
  out.detectorSet = lens.setDetector({ image: 'short_range' });
  out.groupDefault = (await lens.detect(group)).detector;
  out.detectorInfo = lens.info.detector;
  lens.setDetector({ image: 'full_range' });
  try { lens.setDetector({ audio: 'full_range' }); } catch (e) { out.badDetector = e.code; }
  try { await lens.detect(group, { detector: 'long_range' }); } catch (e) { out.badDetectorCall = e.code; }

  const before = lens.stats.dropped;
  const [a, b, c] = await Promise.all([lens.detect(canvas), lens.detect(canvas), lens.detect(canvas)]);
  out.busy = { first: a !== null, second: b, third: c !== null, dropped: lens.stats.dropped - before };
  out.events = events;
  out.result = lens.result === c;
  try { await lens.detect('not an image'); } catch (e) { out.badInput = e.code; }
  try { await lens.setModel('no-such-model'); } catch (e) { out.badModel = e.code; }
  out.smoothing = await lens.setSmoothing({ mode: 'median', k: 99 });

  const iterator = lens.results();
  const next = iterator.next();
  await lens.detect(canvas);
  out.iterated = (await next).value.faces.length;
  await lens.dispose();
  out.iteratorDone = (await iterator.next()).done;
  out.stateAfter = lens.state;
  try { await lens.detect(canvas); } catch (e) { out.afterDispose = e.code; }
  return out;
}"""


def test_engine_api(example):
    page = example["page"]
    happy = base64.b64encode(videos.still_png(videos.HAPPY).read_bytes()).decode()
    group = base64.b64encode(videos.still_png(videos.GROUP).read_bytes()).decode()
    out = page.evaluate(ENGINE_API_CHECK, [happy, group])
    assert out["configErrors"] == {"maxFaces": "config", "unknown": "config", "ep": "config", "smoothing": "config",
                                   "detector": "config", "detectEvery": "config"}
    assert out["frozen"]
    assert out["stateBefore"] == "idle" and out["beforeLoad"] == "not-ready"
    assert out["info"]["thread"] == "worker"
    # The full-range detector (photos) is downloaded with the rest, its session started by the first photo.
    assert out["info"]["ep"] == {"detector": "wasm", "detectorFullRange": None, "emotion": "wasm"}
    assert out["attemptsAtReady"] == []
    assert out["infoEvents"] == [{"detector": "wasm", "detectorFullRange": "wasm", "emotion": "wasm"}]
    assert out["epAfterPhoto"] == out["infoEvents"][0] and out["attemptsAfterPhoto"] == ["wasm"]
    assert out["info"]["smoothing"] == {"mode": "none", "k": 1}
    assert set(out["progressSteps"]) == {"python", "numpy", "models", "verify"}
    assert set(out["progressKeys"]) <= {"status", "step", "stage", "loaded", "total", "ep", "fraction"}

    inputs = out["inputs"]
    ref = inputs["bitmap"]
    assert len(ref["boxes"]) == 1
    for name, r in inputs.items():
        assert len(r["boxes"]) == 1, name
        assert r["kind"] == ("video" if name == "video" else "image"), name
        assert r["detector"] == ("short_range" if name == "video" else "full_range"), name  # DEFAULTS.detector
        assert r["detectorRan"] is True, name  # after reset() the detector runs, on a video frame too
        if name == "video":
            continue  # the camera shows the same face, from a video frame: checked for a face only
        assert (r["width"], r["height"]) == (ref["width"], ref["height"]), name
        assert max(abs(p - q) for p, q in zip(r["boxes"][0], ref["boxes"][0])) < 1.0, name
        assert max(abs(p - q) for p, q in zip(r["probs"][0], ref["probs"][0])) < 0.02, name
    assert out["bitmapDetached"], "an ImageBitmap given to detect() is transferred to the worker"
    assert out["videoAgain"] == {"detectorRan": False, "faces": 1, "detect": 0}

    assert out["group"]["detected"] == 4 and out["group"]["faces"] == 2  # maxFaces: 2
    assert out["group"]["keys"] == sorted(["id", "box", "score", "index", "label", "display", "emoji", "colour",
                                           "uncertain", "top2", "probs", "raw_probs"])
    assert out["group"]["detector"] == "full_range" and out["group"]["detectorRan"] is True  # photos: always
    assert out["groupShort"]["detector"] == "short_range" and out["groupShort"]["detected"] >= 1
    assert out["detectorSet"] == {"video": "short_range", "image": "short_range"}
    assert out["groupDefault"] == "short_range" and out["detectorInfo"] == out["detectorSet"]
    assert out["badDetector"] == "config" and out["badDetectorCall"] == "input"
    assert set(out["group"]["timings"]) >= {"grab", "capture", "detect", "pre", "preDetector", "classify", "post",
                                           "total", "roundTrip"}
    # Three frames at once: the first runs, the second waits and is replaced by the third (newest wins).
    assert out["busy"] == {"first": True, "second": None, "third": True, "dropped": 1}
    assert out["result"] and out["events"] >= 8
    assert out["badInput"] == "input" and out["badModel"] == "model"
    assert out["smoothing"] == {"mode": "median", "k": 30}
    assert out["iterated"] == 1 and out["iteratorDone"] is True
    assert out["stateAfter"] == "disposed" and out["afterDispose"] == "not-ready"


ROTATED_FRAME_CHECK = """async (pngBase64) => {
  const m = await import('../js/emotion-lens.js');
  const bitmap = await createImageBitmap(new Blob([Uint8Array.from(atob(pngBase64), (c) => c.charCodeAt(0))]));
  const W = bitmap.width, H = bitmap.height;
  // As a phone's camera delivers it: the picture stored turned a quarter clockwise (H x W coded), and the frame's
  // rotation (270, clockwise) turning it back upright for display.
  const turned = new OffscreenCanvas(H, W);
  const g = turned.getContext('2d');
  g.translate(H, 0);
  g.rotate(Math.PI / 2);
  g.drawImage(bitmap, 0, 0);
  const rgba = g.getImageData(0, 0, H, W).data;
  const frameOf = (rotation) => {  // I420, as cameras deliver: a luma plane the engine reads directly
    const cw = H, ch = W;
    const data = new Uint8Array(cw * ch * 3 / 2);
    for (let i = 0; i < cw * ch; i++) {
      data[i] = Math.round(0.257 * rgba[4 * i] + 0.504 * rgba[4 * i + 1] + 0.098 * rgba[4 * i + 2] + 16);
    }
    data.fill(128, cw * ch);
    return new VideoFrame(data, { format: 'I420', codedWidth: cw, codedHeight: ch, timestamp: 0, rotation });
  };
  const lens = m.createEmotionLens({ executionProviders: ['wasm'], smoothing: { mode: 'none', k: 1 } });
  await lens.load();
  const upright = await lens.detect(bitmap);
  await lens.reset();
  const frame = frameOf(270);
  const shape = [frame.displayWidth, frame.displayHeight];
  const rotated = await lens.detect(frame);
  await lens.dispose();
  const face = (r) => r.faces.map((f) => ({ box: f.box, label: f.label }));
  return { shape, upright: face(upright), uprightSize: [upright.width, upright.height], rotated: face(rotated),
           rotatedSize: [rotated.width, rotated.height] };
}"""


def test_a_rotated_camera_frame_is_read_the_right_way_up(example):
    """Phones deliver portrait camera frames stored turned, with rotation metadata (VideoFrame.rotation): the engine
    must read them as displayed, the faces found and labelled as in the upright picture (the luma plane, which is
    stored as coded, is not used for them)."""
    page = example["page"]
    happy = base64.b64encode(videos.still_png(videos.HAPPY).read_bytes()).decode()
    out = page.evaluate(ROTATED_FRAME_CHECK, happy)
    assert out["shape"] == out["uprightSize"] == out["rotatedSize"], out
    assert len(out["upright"]) == len(out["rotated"]) == 1, out
    (a,), (b,) = out["upright"], out["rotated"]
    centre = lambda box: (box[0] + box[2] / 2, box[1] + box[3] / 2)  # noqa: E731
    (ax, ay), (bx, by) = centre(a["box"]), centre(b["box"])
    assert abs(ax - bx) < 0.1 * a["box"][2] and abs(ay - by) < 0.1 * a["box"][3], out
    if example["app"].real_model:
        assert a["label"] == b["label"], out
