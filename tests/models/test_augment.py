"""Batched SimCLR augmentation: reproducible, per-sample, and exact in its degenerate settings."""

from __future__ import annotations

import colorsys

import pytest
import torch
import torch.nn.functional as F

from dist_train.models.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    _adjust_hue,
    _gaussian_blur,
    augment_batch,
    eval_transform,
    normalize,
)

NOTHING = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)


def images(n=4, h=40, w=48, seed=0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def gen(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def unnormalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD)[None, :, None, None]
    return x * std + mean


def test_output_shape_dtype_and_range():
    for batch in (images(), images().float() / 255):
        out = augment_batch(batch, gen(), AugmentConfig(size=32))
        assert out.shape == (4, 3, 32, 32) and out.dtype == torch.float32
        pixels = unnormalize(out)
        assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    assert augment_batch(images(), gen(), AugmentConfig(size=(24, 36))).shape == (4, 3, 24, 36)


def test_uint8_and_float_inputs_agree():
    a = augment_batch(images(), gen(3), AugmentConfig(size=32))
    b = augment_batch(images().float() / 255, gen(3), AugmentConfig(size=32))
    assert torch.allclose(a, b, atol=1e-5)


def test_same_generator_same_views_and_another_seed_other_views():
    config = AugmentConfig(size=32)
    first, again = augment_batch(images(), gen(7), config), augment_batch(images(), gen(7), config)
    assert torch.equal(first, again)
    assert not torch.allclose(first, augment_batch(images(), gen(8), config))


def test_generator_advances_the_same_whatever_the_outcomes():
    g1, g2 = gen(5), gen(5)
    augment_batch(images(seed=1), g1, AugmentConfig(size=32))
    augment_batch(images(seed=2), g2, AugmentConfig(size=32, jitter_p=1.0, blur_p=1.0))
    assert torch.equal(g1.get_state(), g2.get_state())


def test_each_image_of_a_batch_gets_its_own_crop():
    one = images(n=1)
    batch = one.expand(6, -1, -1, -1).contiguous()
    out = augment_batch(batch, gen(), AugmentConfig(size=24, flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0))
    flat = out.flatten(1)
    for i in range(6):
        for j in range(i + 1, 6):
            assert not torch.allclose(flat[i], flat[j]), (i, j)


def test_identity_settings_reproduce_the_input():
    x = images(h=36, w=36)
    out = augment_batch(x, gen(), AugmentConfig(size=36, **NOTHING))
    assert torch.allclose(out, normalize(x.float() / 255), atol=1e-5)


def test_flip_mirrors_the_whole_image():
    x = images(h=36, w=36)
    out = augment_batch(x, gen(), AugmentConfig(size=36, **{**NOTHING, "flip_p": 1.0}))
    assert torch.allclose(out, normalize(x.float().flip(-1) / 255), atol=1e-5)


def test_crop_boxes_follow_random_resized_crop():
    """Coordinate ramps as image: bilinear sampling of a linear function is exact, so each output
    pixel tells where it was read, and the read positions give each sample's crop box."""
    n, height, width, size = 64, 48, 64, 32
    jj = (torch.arange(width) + 0.5) / width
    ii = (torch.arange(height) + 0.5) / height
    ramps = torch.stack([jj.expand(height, width), ii[:, None].expand(height, width), torch.zeros(height, width)])
    config = AugmentConfig(size=size, **{**NOTHING, "crop_scale": (0.08, 1.0), "crop_ratio": (3 / 4, 4 / 3)})
    out = unnormalize(augment_batch(ramps.expand(n, -1, -1, -1).contiguous(), gen(), config))
    inner = slice(4, -4)  # away from the box edges, where samples may clamp to the border
    x_read, y_read = out[:, 0, 16, inner] * width, out[:, 1, inner, 16] * height
    box_w = (x_read[:, -1] - x_read[:, 0]) / (size - 9) * size
    box_h = (y_read[:, -1] - y_read[:, 0]) / (size - 9) * size
    area = box_w * box_h / (height * width)
    assert area.min() >= 0.08 - 1e-3 and area.max() <= 1 + 1e-3
    assert (box_w / box_h).min() >= 3 / 4 - 1e-3 and (box_w / box_h).max() <= 4 / 3 + 1e-3
    left = x_read[:, 0] - (4.5 / size) * box_w  # read position of output column 4's centre
    assert left.min() >= -1e-3 and (left + box_w).max() <= width + 1e-3
    assert area.std() > 0.1  # boxes of many sizes, not one


def test_grayscale_makes_channels_equal():
    out = unnormalize(augment_batch(images(), gen(), AugmentConfig(size=32, **{**NOTHING, "grayscale_p": 1.0})))
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-5) and torch.allclose(out[:, 1], out[:, 2], atol=1e-5)


def test_colour_jitter_changes_colours_but_not_geometry_or_range():
    x = images(h=32, w=32)
    out = unnormalize(augment_batch(x, gen(), AugmentConfig(size=32, **{**NOTHING, "jitter_p": 1.0})))
    assert not torch.allclose(out, x.float() / 255, atol=1e-2)
    assert out.min() >= -1e-5 and out.max() <= 1 + 1e-5


def test_hue_rotation_matches_colorsys():
    x = torch.rand(2, 3, 5, 5, generator=gen(1))
    shift = torch.tensor([0.1, -0.3])
    out = _adjust_hue(x, shift)
    for n in range(2):
        for i in range(5):
            for j in range(5):
                h, s, v = colorsys.rgb_to_hsv(*x[n, :, i, j].tolist())
                expected = colorsys.hsv_to_rgb((h + shift[n].item()) % 1.0, s, v)
                assert torch.allclose(out[n, :, i, j], torch.tensor(expected), atol=1e-5)


def test_blur_matches_a_direct_2d_convolution_and_keeps_flat_images():
    x = torch.rand(2, 3, 20, 20, generator=gen(2))
    sigma = torch.tensor([0.7, 1.6])
    out = _gaussian_blur(x, sigma, kernel_size=7)
    offsets = torch.arange(-3, 4, dtype=torch.float32)
    for n in range(2):
        k1 = torch.exp(-offsets**2 / (2 * sigma[n] ** 2))
        k2 = torch.outer(k1, k1) / k1.sum() ** 2
        padded = F.pad(x[n : n + 1], (3, 3, 3, 3), mode="reflect")
        ref = F.conv2d(padded, k2.expand(3, 1, 7, 7).contiguous(), groups=3)
        assert torch.allclose(out[n : n + 1], ref, atol=1e-5)
    flat = torch.full((1, 3, 9, 9), 0.3)
    assert torch.allclose(_gaussian_blur(flat, torch.tensor([2.0]), kernel_size=7), flat, atol=1e-6)
    assert torch.allclose(_gaussian_blur(x, torch.zeros(2), kernel_size=7), x, atol=1e-6)  # sigma 0: none


def test_blur_kernel_is_a_tenth_of_the_image():
    """Only the blur is on: the result is smoother than the input, and equals `_gaussian_blur`."""
    x = images(h=40, w=40)
    config = AugmentConfig(size=40, **{**NOTHING, "blur_p": 1.0, "blur_sigma": (1.5, 1.5)})
    out = unnormalize(augment_batch(x, gen(), config))
    ref = _gaussian_blur(x.float() / 255, torch.full((4,), 1.5), kernel_size=5)  # 2 * int(4 / 2) + 1
    assert torch.allclose(out, ref, atol=1e-5)


def test_downscaling_is_antialiased():
    """A one-pixel checkerboard shrunk 4x averages to grey instead of aliasing."""
    ii, jj = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    board = ((ii + jj) % 2).float().expand(1, 3, 64, 64).contiguous()
    out = unnormalize(augment_batch(board, gen(), AugmentConfig(size=16, **NOTHING)))
    assert torch.allclose(out, torch.full_like(out, 0.5), atol=1e-4)


def test_published_code_preset():
    config = AugmentConfig.published_code(size=64)
    assert (config.flip_p, config.blur_p, config.blur_sigma, config.size) == (0.0, 1.0, (0.0, 2.0), 64)
    assert augment_batch(images(), gen(), config).shape == (4, 3, 64, 64)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        augment_batch(torch.rand(3, 8, 8), gen())
    with pytest.raises(ValueError, match="uint8 or float"):
        augment_batch(torch.zeros(1, 3, 8, 8, dtype=torch.int32), gen())
    with pytest.raises(ValueError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.0, 1.0))


def test_eval_transform_resizes_then_centre_crops():
    x = images(h=256, w=256)
    out = eval_transform(x, size=224)
    assert out.shape == (4, 3, 224, 224)
    assert torch.allclose(out, normalize(x.float()[..., 16:240, 16:240] / 255), atol=1e-5)
    wide = eval_transform(images(h=64, w=128), size=32, resize=40)
    assert wide.shape == (4, 3, 32, 32)
    assert torch.equal(wide, eval_transform(images(h=64, w=128), size=32, resize=40))
