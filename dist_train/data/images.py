"""Image validation and re-encoding: every image in a shard is a clean baseline RGB JPEG.

Decoding is the one place where untrusted bytes meet a C library, so each failure mode gets its
own reason: the packer counts and reports them instead of crashing or silently zero-filling.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageFile, ImageOps

# Truncated files must fail to decode, not come back half grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

DEFAULT_MAX_PIXELS = 50_000_000  # decompression-bomb guard, checked on the header before decoding
DEFAULT_JPEG_QUALITY = 90


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
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ...
        message = str(e) or type(e).__name__
        reason = "truncated_image" if "truncated" in message.lower() else "undecodable_image"
        raise ImageRejected(reason, message) from None
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block does not make the pixels wrong
        pass
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def resize_to_max_side(img: Image.Image, max_side: int | None) -> Image.Image:
    if not max_side or max(img.size) <= max_side:
        return img
    scale = max_side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)


def encode_jpeg(img: Image.Image, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality, optimize=False, progressive=False)
    return out.getvalue()


def reencode(
    image: bytes | Image.Image,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
    quality: int = DEFAULT_JPEG_QUALITY,
) -> tuple[bytes, int, int]:
    """Validate, decode, optionally shrink, and re-encode one image: (jpeg bytes, width, height)."""
    img = to_rgb(image) if isinstance(image, Image.Image) else decode(image, max_pixels)
    img = resize_to_max_side(img, max_side)
    return encode_jpeg(img, quality), img.width, img.height
