"""Without a process group the gathers are the identity (the 2-process behaviour is covered by
test_global_batch, through every loss)."""

import torch

from dist_train.distributed import gather_detached, gather_rows, gather_with_grad, mean_share


def test_gathers_are_identity_in_one_process():
    x = torch.randn(4, 3, requires_grad=True)
    rows = gather_rows(x)
    assert rows.all is x and rows.offset == 0 and rows.local_count == 4 and rows.sizes == (4,)
    assert rows.local.shape == (4, 3) and rows.total == 4
    assert gather_with_grad(x) is x
    assert not gather_detached(x).requires_grad


def test_mean_share_is_the_mean_in_one_process():
    local_sum = torch.tensor(6.0, dtype=torch.float16)
    share = mean_share(local_sum, torch.tensor(4.0, dtype=torch.float64))
    assert share.dtype == torch.float16 and share.item() == 1.5
