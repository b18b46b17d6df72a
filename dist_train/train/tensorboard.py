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

    def hparams(self, config: Mapping[str, Any], metrics: list[str]) -> None:
        """The run's settings in TensorBoard's HPARAMS tab (one row per run folder: a sweep's runs side by
        side), with `metrics`, scalar tags this run logs, as its columns."""
        if self.writer is None:
            return
        from torch.utils.tensorboard.summary import hparams

        flat = flatten_settings(config)
        for summary in hparams(flat, {tag: 0.0 for tag in metrics}):
            self.writer.file_writer.add_summary(summary)

    def histogram(self, tag: str, values: Any, step: int) -> None:
        if self.writer is not None:
            self.writer.add_histogram(tag, np.asarray(values, dtype=np.float32), step)

    def image(self, tag: str, png_path: str | Path, step: int) -> None:
        """A PNG file (for example the evaluation heatmap) as an image summary."""
        if self.writer is not None:
            from PIL import Image

            pixels = np.asarray(Image.open(png_path).convert("RGB"))
            self.writer.add_image(tag, pixels, step, dataformats="HWC")

    def text(self, tag: str, text: str, step: int) -> None:
        """Markdown text (e.g. generated captions beside their references) in TensorBoard's TEXT tab."""
        if self.writer is not None:
            self.writer.add_text(tag, text, step)

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


def flatten_settings(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 1e-3}} -> {"optim.lr": 1e-3}: numbers, strings and booleans as they are, lists and
    None as text (what TensorBoard's hparams take)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_settings(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat
