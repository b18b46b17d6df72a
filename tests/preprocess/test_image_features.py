"""Crop-averaged ResNet features: geometry, averaging, determinism and weight loading, end to end."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from dist_train.models.resnet import load_resnet_weights, resnet
from dist_train.preprocess.image_features import ImageDecodeError, ImageFeatureExtractor

SMALL = dict(image_size=64, resize=80)  # small geometry keeps CPU tests fast
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def jpeg(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    # Smooth gradients plus noise: corners and centre look different, so crops matter.
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) * 127 / (width + height)], -1)
    pixels = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    return [jpeg(120, 90, 0), jpeg(70, 110, 1), jpeg(100, 100, 2), jpeg(200, 81, 3)]


def hand_crops(data: bytes, resize: int, size: int, crops: str) -> torch.Tensor:
    """The crops, written independently with PIL: `[n, 3, size, size]` normalised float32."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    scale = resize / min(w, h)
    img = img.resize((resize if w <= h else int(w * scale), resize if h < w else int(h * scale)), Image.BILINEAR)
    w, h = img.size
    cl, ct = int(round((w - size) / 2)), int(round((h - size) / 2))
    boxes = [(0, 0), (w - size, 0), (0, h - size), (w - size, h - size), (cl, ct)]
    pieces = [img.crop((x, y, x + size, y + size)) for x, y in boxes]
    if crops == "center":
        pieces = pieces[-1:]
    elif crops == "ten":
        pieces += [ImageOps.mirror(p) for p in pieces]
    arrays = [(np.asarray(p, dtype=np.float32) / 255 - MEAN) / STD for p in pieces]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def hand_features(model, data: bytes, crops: str) -> np.ndarray:
    with torch.inference_mode():
        per_crop = model.eval().forward_features(hand_crops(data, SMALL["resize"], SMALL["image_size"], crops))
    return per_crop.numpy().mean(0)


def test_shape_dtype_and_describe(images):
    ext = ImageFeatureExtractor("resnet18", **SMALL)
    feats = ext(images)
    assert feats.shape == (4, 512) and feats.dtype == np.float16
    assert ext.feature_dim == 512
    assert np.isfinite(feats).all() and (feats >= 0).all()  # pooled post-ReLU
    assert ext(images[:0]).shape == (0, 512)
    assert ext.describe() == {
        "arch": "resnet18",
        "weights": "random-init(0)",
        "crops": "ten",
        "image_size": 64,
        "resize": 80,
        "feature_dim": 512,
        "pooling": "mean over crops of global-average-pooled features",
    }


def test_resnet50_dim(images):
    ext = ImageFeatureExtractor("resnet50", crops="center", **SMALL)
    assert ext(images[:2]).shape == (2, 2048)


def test_same_seed_same_features_different_seed_differs(images):
    a = ImageFeatureExtractor(seed=7, **SMALL)(images)
    torch.manual_seed(123)  # the caller's RNG state must not matter
    b = ImageFeatureExtractor(seed=7, **SMALL)(images)
    c = ImageFeatureExtractor(seed=8, **SMALL)(images)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(np.float32) - c.astype(np.float32)).max() > 0.1


def test_init_leaves_global_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    ImageFeatureExtractor(**SMALL)
    assert torch.equal(torch.rand(3), expected)


def test_batch_equals_one_at_a_time(images):
    ext = ImageFeatureExtractor(batch_size=3, **SMALL)
    together = ext(images).astype(np.float32)
    alone = np.concatenate([ext([img]) for img in images]).astype(np.float32)
    np.testing.assert_allclose(together, alone, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("crops", ["ten", "five", "center"])
def test_crop_average_matches_hand_computation(images, crops):
    ext = ImageFeatureExtractor(crops=crops, **SMALL)
    feats = ext(images).astype(np.float32)
    for i, data in enumerate(images):
        expected = hand_features(ext.model, data, crops)
        np.testing.assert_allclose(feats[i], expected, rtol=2e-3, atol=2e-3)


def test_ten_crop_differs_from_center(images):
    ten = ImageFeatureExtractor(crops="ten", **SMALL)(images).astype(np.float32)
    centre = ImageFeatureExtractor(crops="center", **SMALL)(images).astype(np.float32)
    assert np.abs(ten - centre).max() > 0.05


def test_weights_file_is_used(tmp_path, images):
    torch.manual_seed(99)
    trained = resnet("resnet18")
    with torch.no_grad():  # non-trivial BN statistics, as in a real checkpoint
        for name, t in trained.state_dict().items():
            if "running_var" in name:
                t.uniform_(0.5, 2.0)
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": trained.state_dict()}, path)

    loaded = ImageFeatureExtractor(weights=path, crops="center", **SMALL)
    random = ImageFeatureExtractor(crops="center", **SMALL)
    feats = loaded(images).astype(np.float32)
    assert loaded.describe()["weights"] == str(path)
    assert np.abs(feats - random(images).astype(np.float32)).max() > 0.1

    by_hand = load_resnet_weights(resnet("resnet18"), path)
    for i, data in enumerate(images):
        np.testing.assert_allclose(feats[i], hand_features(by_hand, data, "center"), rtol=2e-3, atol=2e-3)


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        ImageFeatureExtractor(weights=tmp_path / "absent.pth", **SMALL)


def test_random_init_warning(caplog, tmp_path):
    with caplog.at_level(logging.WARNING, logger="dist_train.preprocess.image_features"):
        ImageFeatureExtractor(seed=3, **SMALL)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "RANDOMLY INITIALISED resnet18 (seed 3)" in warnings[0].getMessage()

    caplog.clear()
    path = tmp_path / "w.pth"
    torch.save(resnet("resnet18").state_dict(), path)
    with caplog.at_level(logging.WARNING, logger="dist_train.preprocess.image_features"):
        ImageFeatureExtractor(weights=path, **SMALL)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_undecodable_image_names_its_index(images):
    ext = ImageFeatureExtractor(batch_size=2, **SMALL)
    bad = images[:3] + [b"\xff\xd8\xff\xe0 definitely not a jpeg"]
    with pytest.raises(ImageDecodeError, match="image 3 could not be decoded") as err:
        ext(bad)
    assert err.value.index == 3
    truncated = images[2][: len(images[2]) // 2]
    with pytest.raises(ImageDecodeError, match="image 1 could not be decoded"):
        ext([images[0], truncated])


def test_non_rgb_inputs_are_converted():
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 90), dtype=np.uint8), "L").save(buf, "PNG")
    assert ImageFeatureExtractor(crops="center", **SMALL)([buf.getvalue()]).shape == (1, 512)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="crops"):
        ImageFeatureExtractor(crops="three", **SMALL)
    with pytest.raises(ValueError, match="resize"):
        ImageFeatureExtractor(image_size=224, resize=200)


def test_num_threads_is_applied():
    before = torch.get_num_threads()
    try:
        ImageFeatureExtractor(num_threads=1, **SMALL)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_default_geometry_ten_crop_224(images):
    ext = ImageFeatureExtractor()  # ImageNet evaluation geometry: resize 256, ten 224 crops
    feats = ext(images[:1]).astype(np.float32)
    with torch.inference_mode():
        expected = ext.model.forward_features(hand_crops(images[0], 256, 224, "ten")).numpy().mean(0)
    np.testing.assert_allclose(feats[0], expected, rtol=2e-3, atol=2e-3)


def test_deep_random_network_overflow_is_reported(images):
    ext = ImageFeatureExtractor("resnet152", crops="center", image_size=64, resize=64)
    with pytest.raises(OverflowError, match="float16"):
        ext(images[:1])
