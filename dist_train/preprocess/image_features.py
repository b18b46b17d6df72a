"""Precomputed, crop-averaged ResNet image features (the image input of MULE/SMALR).

SMALR (Sec. 4, "Visual Features"), following MULE/EmbN, feeds its image branch ImageNet
ResNet-152 features "averaged over ten 448x448 image crops", giving one 2048-d vector per image.
This module computes exactly that kind of feature: shorter side resized, ten crops (four corners,
centre, and the horizontal flips of all five), ImageNet normalisation, globally pooled features
of each crop, arithmetic mean over the crops. The defaults are the standard ImageNet evaluation
geometry (resize 256, 224 crops) and ResNet-18 so that it runs anywhere; the paper's setting is
`arch="resnet152", image_size=448` with a `resize` of at least 448 (e.g. 512) and the torchvision
ImageNet weights.

Without a weight file the network is randomly initialised from `seed`, identically in every
process, so features stay consistent across a cluster even though they are not meaningful.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dist_train.data.images import ImageRejected, decode
from dist_train.models.image_encoders import build_image_encoder
from dist_train.models.resnet import load_resnet_weights

__all__ = ["CROPS", "IMAGENET_MEAN", "IMAGENET_STD", "ImageDecodeError", "ImageFeatureExtractor"]

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROPS = {"ten": 10, "five": 5, "center": 1}


class ImageDecodeError(ValueError):
    """An input image that could not be decoded; `index` is its position in the call's list."""

    def __init__(self, index: int, reason: str):
        super().__init__(f"image {index} could not be decoded: {reason}")
        self.index = index


class ImageFeatureExtractor:
    """Map encoded images to `[N, feature_dim]` float16 crop-averaged ResNet features.

    `batch_size` counts images: each forward pass sees `batch_size x crops` network inputs
    (640 at the defaults with ten-crop), so lower it for large crops or deep networks.
    `num_threads`, when given, sets torch's intra-op threads for the whole process (Ray
    workers start with OMP_NUM_THREADS=1). `arch` is any network of `dist_train.models.image_encoders`;
    `source` names where `weights` came from (a training run's checkpoint) for the dataset summary.
    """

    def __init__(
        self,
        arch: str = "resnet18",
        weights: str | Path | None = None,
        image_size: int = 224,
        resize: int = 256,
        crops: str = "ten",
        batch_size: int = 64,
        device: str | torch.device = "cpu",
        num_threads: int | None = None,
        seed: int = 0,
        source: str | None = None,
    ):
        if crops not in CROPS:
            raise ValueError(f"crops must be one of {sorted(CROPS)}, got {crops!r}")
        if resize < image_size:
            raise ValueError(f"resize ({resize}) must be at least image_size ({image_size}) to take crops")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        self.arch = arch
        self.weights = None if weights is None else Path(weights)
        self.image_size = image_size
        self.resize = resize
        self.crops = crops
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.seed = seed

        # Same seed -> same network in every process, without disturbing the caller's RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_image_encoder(arch)
        if self.weights is None:
            log.warning(
                "image features come from a RANDOMLY INITIALISED %s (seed %d), not a pretrained "
                "network: consistent across workers but not semantically meaningful; pass "
                "weights= (e.g. torchvision's ImageNet file) for real features",
                arch,
                seed,
            )
        else:
            load_resnet_weights(model, self.weights)
        self.source = source
        self.model = model.eval().to(self.device)
        self.feature_dim = model.feature_dim
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def describe(self) -> dict:
        """What produced the features, for dataset summaries."""
        return {
            "arch": self.arch,
            "weights": self.source or (str(self.weights) if self.weights is not None else f"random-init({self.seed})"),
            "crops": self.crops,
            "image_size": self.image_size,
            "resize": self.resize,
            "feature_dim": self.feature_dim,
            "pooling": "mean over crops of global-average-pooled features",
        }

    def __call__(self, images: Sequence[bytes]) -> np.ndarray:
        out = np.empty((len(images), self.feature_dim), dtype=np.float16)
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            crops = torch.stack([self._crops(self._decode(start + i, data)) for i, data in enumerate(chunk)])
            out[start : start + len(chunk)] = self._features(crops)
        return out

    def _decode(self, index: int, data: bytes) -> Image.Image:
        try:
            return decode(data)
        except ImageRejected as e:
            raise ImageDecodeError(index, str(e)) from None

    def _crops(self, img: Image.Image) -> torch.Tensor:
        """`[n_crops, 3, S, S]` uint8 crops of the image with its shorter side resized."""
        w, h = img.size
        if w <= h:
            size = (self.resize, int(self.resize * h / w))
        else:
            size = (int(self.resize * w / h), self.resize)
        img = img.resize(size, Image.BILINEAR)
        pixels = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        s = self.image_size
        h, w = pixels.shape[1:]
        top, left = round((h - s) / 2), round((w - s) / 2)
        centre = pixels[:, top : top + s, left : left + s]
        if self.crops == "center":
            return centre.unsqueeze(0)
        five = torch.stack(
            [
                pixels[:, :s, :s],  # top-left
                pixels[:, :s, w - s :],  # top-right
                pixels[:, h - s :, :s],  # bottom-left
                pixels[:, h - s :, w - s :],  # bottom-right
                centre,
            ]
        )
        if self.crops == "five":
            return five
        return torch.cat([five, five.flip(-1)])

    @torch.inference_mode()
    def _features(self, crops: torch.Tensor) -> np.ndarray:
        """`[B, n_crops, 3, S, S]` uint8 -> `[B, feature_dim]`, averaged over crops in float32."""
        b, n = crops.shape[:2]
        x = crops.flatten(0, 1).to(self.device, non_blocking=True).float().div_(255)
        x = (x - self._mean) / self._std
        feats = self.model.forward_features(x).view(b, n, -1).mean(dim=1).cpu().numpy()
        peak = float(np.abs(feats).max(initial=0.0))
        if not peak <= float(np.finfo(np.float16).max):
            # Happens with deep randomly initialised networks (eval-mode BN does not rescale).
            raise OverflowError(
                f"{self.arch} features reach {peak:.3g}, beyond float16's range; "
                f"this network ({self.describe()['weights']}) is not usable for float16 features"
            )
        return feats.astype(np.float16)
