"""TensorBoard logging from rank 0 only (other ranks get a logger that does nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np


class TensorBoardLogger:
    def __init__(self, log_dir: str | Path, enabled: bool):
        self.enabled = enabled
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, float(value), step)

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
