"""SimCLR-style image augmentation of whole batches on the training device (for L_v's two views).

Per-image PIL transforms in loader workers are what bounds the throughput of contrastive training
on fast GPUs; here every step is a batched tensor operation with per-sample random parameters:
random resized crop and flip as one affine `grid_sample` per image, colour jitter (brightness,
contrast, saturation, hue in a random order per image), random grayscale, Gaussian blur with a
per-image sigma as one grouped convolution, then ImageNet normalisation.

All randomness is drawn from the `torch.Generator` passed in (on its own device, then moved to the
images' device), so the same generator state gives the same views on CPU and GPU. Parameters
are drawn as fixed-size tensors whatever the outcomes, so the generator always advances by the
same amount for a batch of a given size.

Differences to torchvision/SimCLR, all deliberate: crop boxes are continuous (not rounded to whole
pixels); downscaling averages `m x m` bilinear samples per output pixel (`m` from the largest
downscale in the batch, at most `max_supersample`), a box filter where torchvision's antialiased
resize uses a triangle filter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "AugmentConfig", "augment_batch", "eval_transform", "normalize"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as PIL and torchvision use


@dataclass(frozen=True)
class AugmentConfig:
    """SimCLR's ImageNet augmentation (colour strength 1), which the paper follows.

    `published_code()` gives what the Globetrotter code ran instead: no flip, and a blur on every
    image with sigma in [0, 2] ("from 0 so that natural images are in distribution").
    """

    size: int | tuple[int, int] = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.8
    contrast: float = 0.8
    saturation: float = 0.8
    hue: float = 0.2
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_fraction: float = 0.1  # kernel side as a fraction of the output side
    max_supersample: int = 4
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if not 0.0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio must satisfy 0 < low <= high, got {self.crop_ratio}")
        if not 0.0 <= self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 <= low <= high, got {self.blur_sigma}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")
        if self.max_supersample < 1:
            raise ValueError(f"max_supersample must be at least 1, got {self.max_supersample}")

    @property
    def output_hw(self) -> tuple[int, int]:
        return (self.size, self.size) if isinstance(self.size, int) else (int(self.size[0]), int(self.size[1]))

    @classmethod
    def published_code(cls, **overrides) -> AugmentConfig:
        return replace(cls(flip_p=0.0, blur_p=1.0, blur_sigma=(0.0, 2.0)), **overrides)


def _to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] -> float32 [0, 1], shape checked."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 or float, got {images.dtype}")
    return images.float()


def normalize(images: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """Per-channel `(x - mean) / std` of a float batch in [0, 1]."""
    m = torch.tensor(mean, dtype=images.dtype, device=images.device)[None, :, None, None]
    s = torch.tensor(std, dtype=images.dtype, device=images.device)[None, :, None, None]
    return (images - m) / s


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=generator.device, dtype=torch.float64)


def _sample_crop_boxes(
    n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
    generator: torch.Generator, attempts: int = 10,
) -> torch.Tensor:
    """`[n, 4]` boxes `(x0, y0, w, h)` in pixels, RandomResizedCrop's distribution: area fraction
    uniform in `scale`, log aspect ratio uniform in `ratio`, first of `attempts` draws that fits,
    else the whole image clamped to the ratio range; position uniform where the box fits."""
    area = float(height * width)
    target = area * _uniform(n * attempts, *scale, generator).view(n, attempts)
    aspect = torch.exp(_uniform(n * attempts, math.log(ratio[0]), math.log(ratio[1]), generator)).view(n, attempts)
    w = torch.sqrt(target * aspect)
    h = torch.sqrt(target / aspect)
    fits = (w <= width) & (h <= height)
    first = fits.to(torch.int8).argmax(dim=1, keepdim=True)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]

    image_ratio = width / height
    if image_ratio < ratio[0]:
        fallback_w, fallback_h = float(width), width / ratio[0]
    elif image_ratio > ratio[1]:
        fallback_w, fallback_h = height * ratio[1], float(height)
    else:
        fallback_w, fallback_h = float(width), float(height)
    found = fits.any(dim=1)
    w = torch.where(found, w, torch.full_like(w, fallback_w)).clamp(max=width)
    h = torch.where(found, h, torch.full_like(h, fallback_h)).clamp(max=height)
    x0 = torch.rand(n, generator=generator, device=generator.device, dtype=torch.float64) * (width - w)
    y0 = torch.rand(n, generator=generator, device=generator.device, dtype=torch.float64) * (height - h)
    return torch.stack([x0, y0, w, h], dim=1)


def _crop_resize(images: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, out_hw: tuple[int, int],
                 max_supersample: int) -> torch.Tensor:
    """Bilinear resample of each image's box to `out_hw` (mirrored where `flip`), one batched
    `grid_sample`; boxes larger than the output are area-averaged over `m x m` samples."""
    n, _, height, width = images.shape
    out_h, out_w = out_hw
    x0, y0, w, h = boxes.unbind(1)
    # align_corners=False maps output pixel centres onto the box: x_in = (w/W) x_out + centre.
    theta = torch.zeros(n, 2, 3, dtype=torch.float64, device=boxes.device)
    theta[:, 0, 0] = torch.where(flip, -1.0, 1.0).to(torch.float64) * w / width
    theta[:, 0, 2] = (2 * x0 + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * y0 + h) / height - 1
    downscale = torch.maximum(w / out_w, h / out_h).max().item() if n else 1.0
    m = max(1, min(max_supersample, math.ceil(downscale - 1e-9)))
    theta = theta.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, [n, 3, out_h * m, out_w * m], align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return F.avg_pool2d(out, m) if m > 1 else out


def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    return (_GRAY_WEIGHTS[0] * r + _GRAY_WEIGHTS[1] * g + _GRAY_WEIGHTS[2] * b)[:, None]


def _per_image(factor: torch.Tensor) -> torch.Tensor:
    return factor[:, None, None, None]


def _adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (x * _per_image(factor)).clamp(0.0, 1.0)


def _adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean_gray = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    f = _per_image(factor)
    return (f * x + (1 - f) * mean_gray).clamp(0.0, 1.0)


def _adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = _per_image(factor)
    return (f * x + (1 - f) * _gray(x)).clamp(0.0, 1.0)


def _adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by `shift` turns: RGB -> HSV, h += shift, HSV -> RGB."""
    r, g, b = x.unbind(1)
    value, _ = x.max(dim=1)
    chroma = value - x.min(dim=1).values
    safe_chroma = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    saturation = torch.where(value > 0, chroma / torch.where(value > 0, value, torch.ones_like(value)),
                             torch.zeros_like(value))
    hue_sixths = torch.where(
        value == r, (g - b) / safe_chroma,
        torch.where(value == g, 2.0 + (b - r) / safe_chroma, 4.0 + (r - g) / safe_chroma),
    )
    hue_sixths = torch.where(chroma > 0, hue_sixths, torch.zeros_like(hue_sixths))
    hue = torch.remainder(hue_sixths / 6.0 + shift[:, None, None], 1.0)
    # Closed form of HSV -> RGB: channel n in (5, 3, 1) for (R, G, B).
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + hue * 6.0, 6.0)
        channels.append(value - value * saturation * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(channels, dim=1)


_JITTER_OPS = (_adjust_brightness, _adjust_contrast, _adjust_saturation, _adjust_hue)


def _colour_jitter(x: torch.Tensor, apply: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Each image in `apply` gets the four adjustments in its own order (as torchvision's
    ColorJitter picks a random permutation); each op runs only on the images whose turn it is."""
    x = x.clone()
    for step in range(len(_JITTER_OPS)):
        for op_index, op in enumerate(_JITTER_OPS):
            chosen = torch.nonzero(apply & (order[:, step] == op_index)).flatten()
            if chosen.numel():
                x[chosen] = op(x[chosen], factors[chosen, op_index])
    return x


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per image (reflect padding, like torchvision)."""
    n, c, height, width = x.shape
    radius = kernel_size // 2
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    sigma = sigma.to(x.dtype).clamp_min(1e-3)  # sigma 0: a delta kernel, i.e. no blur
    kernel = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None] ** 2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # [n*c, k]
    mode = "reflect" if radius < min(height, width) else "replicate"
    flat = F.pad(x.reshape(1, n * c, height, width), (radius, radius, radius, radius), mode=mode)
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=n * c)
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=n * c)
    return flat.reshape(n, c, height, width)


def augment_batch(
    images: torch.Tensor, generator: torch.Generator, config: AugmentConfig | None = None
) -> torch.Tensor:
    """One random view of every image: `[B, 3, H, W]` uint8 or float in [0, 1] -> float32
    `[B, 3, *config.output_hw]`, ImageNet-normalised, on the images' device."""
    config = config or AugmentConfig()
    x = _to_unit_float(images)
    n, _, height, width = x.shape
    out_hw = config.output_hw
    device = x.device

    def draw(size: int) -> torch.Tensor:
        return torch.rand(size, generator=generator, device=generator.device)

    # Every draw happens, applied or not, so the generator advances the same for any outcome.
    boxes = _sample_crop_boxes(n, height, width, config.crop_scale, config.crop_ratio, generator)
    flip = draw(n) < config.flip_p
    jitter = draw(n) < config.jitter_p
    bounds = [(max(0.0, 1 - s), 1 + s) for s in (config.brightness, config.contrast, config.saturation)]
    factors = torch.stack([low + (high - low) * draw(n) for low, high in bounds]
                          + [config.hue * (2 * draw(n) - 1)], dim=1)
    order = torch.argsort(torch.rand(n, len(_JITTER_OPS), generator=generator, device=generator.device), dim=1)
    grayscale = draw(n) < config.grayscale_p
    blur = draw(n) < config.blur_p
    sigma = config.blur_sigma[0] + (config.blur_sigma[1] - config.blur_sigma[0]) * draw(n)
    jitter, factors, order, grayscale, blur, sigma = (
        t.to(device) for t in (jitter, factors, order, grayscale, blur, sigma)
    )

    x = _crop_resize(x, boxes, flip, out_hw, config.max_supersample)  # boxes/flip: generator's device
    x = _colour_jitter(x, jitter, factors, order)
    x = torch.where(grayscale[:, None, None, None], _gray(x).expand_as(x), x)
    kernel_size = 2 * int(config.blur_kernel_fraction * min(out_hw) / 2) + 1
    blurred = torch.nonzero(blur).flatten()
    if kernel_size > 1 and blurred.numel():
        x[blurred] = _gaussian_blur(x[blurred], sigma[blurred], kernel_size)
    return normalize(x, config.mean, config.std)


def eval_transform(images: torch.Tensor, size: int = 224, resize: int | None = None,
                   mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """Deterministic view for evaluation: shorter side to `resize` (default `size * 256 / 224`,
    the ImageNet convention), centre `size x size` crop, ImageNet normalisation."""
    x = _to_unit_float(images)
    resize = resize or round(size * 256 / 224)
    if resize < size:
        raise ValueError(f"resize ({resize}) must be at least size ({size})")
    height, width = x.shape[-2:]
    scale = resize / min(height, width)
    new_hw = (max(size, round(height * scale)), max(size, round(width * scale)))
    if new_hw != (height, width):
        x = F.interpolate(x, size=new_hw, mode="bilinear", antialias=True, align_corners=False).clamp(0.0, 1.0)
    top, left = (new_hw[0] - size) // 2, (new_hw[1] - size) // 2
    return normalize(x[..., top:top + size, left:left + size], mean, std)
