"""Image validation and re-encoding: every image in a shard is a clean baseline RGB JPEG.

Decoding is the one place where untrusted bytes meet a C library, so each failure mode gets its
own reason: the packer counts and reports them instead of crashing or silently zero-filling.
Every mode is converted to 8-bit sRGB by what its values mean (16-bit and float greyscale scaled,
LAB through a colour transform); a mode that cannot be converted faithfully is rejected.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING

from PIL import Image, ImageCms, ImageFile, ImageOps

if TYPE_CHECKING:  # numpy is imported where it is used: `dist-train --help` needs none of it
    import numpy as np

# Truncated files must fail to decode, not come back half grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

DEFAULT_MAX_PIXELS = 50_000_000  # decompression-bomb guard, checked on the header before decoding
DEFAULT_JPEG_QUALITY = 90
JPEG_MAX_SIDE = 65_535  # the JPEG format stores each side in 16 bits

# Modes Pillow's own conversion to RGB gets right (alpha is flattened on white first).
_PIL_MODES = {"RGB", "RGBA", "RGBX", "RGBa", "L", "LA", "1", "P", "PA", "CMYK", "YCbCr", "HSV"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


class ImageRejected(Exception):
    """An image that cannot go into a shard; `reason` is one of the packer's reject reasons."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Fully decode `data` to an RGB image with EXIF orientation applied."""
    if not data:
        raise ImageRejected("empty_image", "zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size  # from the header: nothing decoded yet
            if width * height > max_pixels:
                raise ImageRejected("too_many_pixels", f"{width}x{height} > {max_pixels} pixels")
            img.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageRejected("too_many_pixels", str(e)) from None
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, struct.error, MemoryError, ...
        message = str(e) or type(e).__name__
        reason = "truncated_image" if "truncated" in message.lower() else "undecodable_image"
        raise ImageRejected(reason, message) from None
    return to_rgb(img)


def _grey_to_l(values: np.ndarray, scale: float) -> Image.Image:
    import numpy as np

    return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), "L")


def _rescaled(values: np.ndarray) -> Image.Image:
    """The data range stretched to 0..255 (a constant image is clipped to it instead)."""

    lo, hi = float(values.min()), float(values.max())
    if hi > lo:
        return _grey_to_l((values - lo) / (hi - lo), 255.0)
    return _grey_to_l(values, 1.0)


def _integer_grey(img: Image.Image) -> Image.Image:
    """16-bit greyscale (I;16*, or mode I holding 0..65535) scaled to 8 bits; other int ranges rescaled."""
    import numpy as np

    values = np.asarray(img).astype(np.float64)
    if values.size and (values.min() < 0 or values.max() > 65_535):
        return _rescaled(values)
    return _grey_to_l(values, 255.0 / 65_535.0)


def _float_grey(img: Image.Image) -> Image.Image:
    """Float greyscale: values in [0, 1] times 255; any other range is stretched to 0..255 (NaN is 0)."""
    import numpy as np

    values = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if values.size and (values.min() < 0 or values.max() > 1):
        return _rescaled(values)
    return _grey_to_l(values, 255.0)


def _lab_to_rgb(img: Image.Image) -> Image.Image:
    transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
    return ImageCms.applyTransform(img, transform)


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB with the colours the image means; ImageRejected("unsupported_image_mode") otherwise."""
    mode = img.mode
    if mode not in _PIL_MODES and mode not in ("I", "F", "LAB", "La") and not mode.startswith("I;16"):
        raise ImageRejected("unsupported_image_mode", f"mode {mode} has no faithful conversion to RGB")
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block does not make the pixels wrong
        pass
    try:
        if mode == "RGB":
            return img
        if mode == "I" or mode.startswith("I;16"):
            return _integer_grey(img).convert("RGB")
        if mode == "F":
            return _float_grey(img).convert("RGB")
        if mode == "LAB":
            return _lab_to_rgb(img)
        if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
            # premultiplied La converts only to LA; every other alpha mode converts to RGBA directly
            rgba = (img.convert("LA") if mode == "La" else img).convert("RGBA")
            background = Image.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.getchannel("A"))
            return background
        return img.convert("RGB")
    except ImageRejected:
        raise
    except Exception as e:
        raise ImageRejected("unsupported_image_mode", f"mode {mode}: {e or type(e).__name__}") from None


def resize_to_max_side(img: Image.Image, max_side: int | None) -> Image.Image:
    if not max_side or max(img.size) <= max_side:
        return img
    scale = max_side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)


def encode_jpeg(img: Image.Image, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    if max(img.size) > JPEG_MAX_SIDE:
        raise ImageRejected("unencodable_image", f"{img.width}x{img.height}: a JPEG side is at most "
                                                 f"{JPEG_MAX_SIDE} pixels (--max-side shrinks it)")
    out = io.BytesIO()
    try:
        img.save(out, format="JPEG", quality=quality, optimize=False, progressive=False)
    except Exception as e:
        raise ImageRejected("unencodable_image", f"{img.width}x{img.height}: {e or type(e).__name__}") from None
    return out.getvalue()


def reencode(
    image: bytes | Image.Image,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
    quality: int = DEFAULT_JPEG_QUALITY,
) -> tuple[bytes, int, int]:
    """Validate, decode, optionally shrink, and re-encode one image: (jpeg bytes, width, height).

    Raises only ImageRejected: whatever goes wrong with one image is that image's reject."""
    if isinstance(image, Image.Image):
        img = to_rgb(image)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        img = decode(bytes(image), max_pixels)
    else:
        raise ImageRejected("undecodable_image", f"the source gave a {type(image).__name__}, not image bytes")
    try:
        img = resize_to_max_side(img, max_side)
    except Exception as e:
        raise ImageRejected("unencodable_image", f"resizing {img.width}x{img.height}: {e or type(e).__name__}") from None
    return encode_jpeg(img, quality), img.width, img.height
