"""Strong real-time augmentation, done batched on tensors (CPU or GPU) so 2 CPU cores are not spent in workers.

Flip, random affine (rotation, scale, shift, shear: covers random-resized-crop), brightness/contrast/gamma,
Gaussian noise and random erasing. Input and output: (N, 1, 48, 48) float in 0..255 (before normalisation).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    flip: float = 0.5
    rotate_deg: float = 15.0
    scale: tuple[float, float] = (0.85, 1.15)
    shift: float = 0.10  # fraction of the image side
    shear_deg: float = 8.0
    brightness: float = 0.25  # +-fraction of 255
    contrast: float = 0.30  # multiplicative +-fraction around the image mean
    gamma: float = 0.25
    noise_std: float = 4.0  # grey levels
    erase_p: float = 0.5
    erase_area: tuple[float, float] = (0.02, 0.15)


# Named presets for the command line. "wide" is the geometric range of the best published small FER models
# (rotation +-30 deg, shift and zoom 20%, flips), with this module's photometric jitter and erasing kept;
# "geometric" is that range alone, as those models train (no shear, jitter, noise or erasing): a lighter load for a
# model that under-fits (training accuracy on augmented batches below validation).
AUGMENT_PRESETS = {
    "default": AugmentConfig(),
    "wide": AugmentConfig(rotate_deg=30.0, scale=(0.8, 1.2), shift=0.20),
    "geometric": AugmentConfig(rotate_deg=30.0, scale=(0.8, 1.2), shift=0.20, shear_deg=0.0, brightness=0.0,
                               contrast=0.0, gamma=0.0, noise_std=0.0, erase_p=0.0),
}


def _uniform(n: int, lo: float, hi: float, device: torch.device) -> torch.Tensor:
    return torch.empty(n, device=device).uniform_(lo, hi)


def random_affine(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    n, device = x.shape[0], x.device
    angle = _uniform(n, -cfg.rotate_deg, cfg.rotate_deg, device) * math.pi / 180
    shear = _uniform(n, -cfg.shear_deg, cfg.shear_deg, device) * math.pi / 180
    scale = _uniform(n, cfg.scale[0], cfg.scale[1], device)
    flip = torch.where(torch.rand(n, device=device) < cfg.flip, -1.0, 1.0)
    tx, ty = (_uniform(n, -cfg.shift, cfg.shift, device) * 2 for _ in range(2))  # grid units span 2
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Output -> input sampling matrix: rotation * shear, divided by scale, with an optional mirror.
    theta = torch.stack([
        torch.stack([cos * flip, -sin + torch.tan(shear) * cos, tx], dim=1),
        torch.stack([sin * flip, cos + torch.tan(shear) * sin, ty], dim=1),
    ], dim=1) / torch.stack([scale, scale, torch.ones_like(scale)], dim=1).unsqueeze(1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def photometric(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    n, device = x.shape[0], x.device
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, device).view(n, 1, 1, 1)
    bright = _uniform(n, -cfg.brightness, cfg.brightness, device).view(n, 1, 1, 1) * 255
    x = ((x - mean) * contrast + mean + bright).clamp(0, 255)
    gamma = torch.exp(_uniform(n, -cfg.gamma, cfg.gamma, device)).view(n, 1, 1, 1)
    x = 255 * (x / 255).pow(gamma)
    if cfg.noise_std > 0:
        x = x + torch.randn_like(x) * cfg.noise_std
    return x.clamp(0, 255)


def random_erase(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    n, _, h, w = x.shape
    device = x.device
    area = _uniform(n, *cfg.erase_area, device) * h * w
    aspect = torch.exp(_uniform(n, math.log(0.3), math.log(3.3), device))
    eh = (area * aspect).sqrt().clamp(1, h)
    ew = (area / aspect).sqrt().clamp(1, w)
    top = torch.rand(n, device=device) * (h - eh)
    left = torch.rand(n, device=device) * (w - ew)
    ys = torch.arange(h, device=device).view(1, h, 1)
    xs = torch.arange(w, device=device).view(1, 1, w)
    box = (ys >= top.view(n, 1, 1)) & (ys < (top + eh).view(n, 1, 1)) & (xs >= left.view(n, 1, 1)) & (xs < (left + ew).view(n, 1, 1))
    box &= (torch.rand(n, device=device) < cfg.erase_p).view(n, 1, 1)
    noise = torch.rand_like(x) * 255
    return torch.where(box.unsqueeze(1), noise, x)


def augment(x: torch.Tensor, cfg: AugmentConfig = AugmentConfig()) -> torch.Tensor:
    """(N, 1, H, W) 0..255 float -> augmented batch, same shape and range."""
    return random_erase(photometric(random_affine(x, cfg), cfg), cfg)
