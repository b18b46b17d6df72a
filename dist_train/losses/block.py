"""The local block of a global similarity matrix: this rank's rows against every rank's columns.

Computing only ``local rows x global columns`` keeps memory linear in the global batch; the rows'
own positions in the global column order are what every loss here needs to mask or pick.
"""

from __future__ import annotations

import torch

# Temperature of the published Globetrotter code for every contrastive term (the paper gives none).
DEFAULT_TEMPERATURE = 0.1


def own_columns(local_count: int, offset: int, device: torch.device) -> torch.Tensor:
    """Global column index of each local row's own sample."""
    return torch.arange(local_count, device=device) + offset


def own_pair_mask(local_count: int, total: int, offset: int, device: torch.device) -> torch.Tensor:
    """Boolean (local_count, total) mask, True where a row meets its own column."""
    mask = torch.zeros(local_count, total, dtype=torch.bool, device=device)
    rows = torch.arange(local_count, device=device)
    mask[rows, own_columns(local_count, offset, device)] = True
    return mask


def check_form(form: str) -> None:
    if form not in ("paper", "code"):
        raise ValueError(f"form must be 'paper' or 'code', not {form!r}")
