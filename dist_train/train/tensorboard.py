"""TensorBoard logging from rank 0 only (other ranks get a logger that does nothing)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

log = logging.getLogger(__name__)


class TensorBoardLogger:
    def __init__(self, log_dir: str | Path, enabled: bool):
        self.enabled = enabled
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, values: Mapping[str, float | None], step: int) -> list[str]:
        """Log every value that is a number; None and NaN (a figure that could not be computed) are left
        out with a warning naming them, never logged as 0 or crashed on. Returns the tags left out."""
        left_out = [tag for tag, value in values.items() if value is None or math.isnan(float(value))]
        if self.writer is not None:
            for tag, value in values.items():
                if tag not in left_out:
                    self.writer.add_scalar(tag, float(value), step)
            if left_out:
                log.warning("step %d: not logged to TensorBoard (no value): %s", step, ", ".join(left_out))
        return left_out

    def histogram(self, tag: str, values: Any, step: int) -> None:
        if self.writer is not None:
            self.writer.add_histogram(tag, np.asarray(values, dtype=np.float32), step)

    def image(self, tag: str, png_path: str | Path, step: int) -> None:
        """A PNG file (for example the evaluation heatmap) as an image summary."""
        if self.writer is not None:
            from PIL import Image

            pixels = np.asarray(Image.open(png_path).convert("RGB"))
            self.writer.add_image(tag, pixels, step, dataformats="HWC")

    def embedding(self, tag: str, vectors: Any, labels: list[str], step: int) -> None:
        if self.writer is not None:
            self.writer.add_embedding(np.asarray(vectors, dtype=np.float32), metadata=labels, tag=tag,
                                      global_step=step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
