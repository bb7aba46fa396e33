"""The fast row sorts behind the 1-D transport losses agree with torch's sort, in value and gradient."""

import pytest
import torch

from stylelab.losses import ranks
from stylelab.losses.transport import resample_sorted


@pytest.mark.parametrize("shape", [(3, 7), (64, 1024)])  # below and above the NumPy threshold
def test_argsort_and_sort_rows_match_torch(shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(x.gather(1, ranks.argsort_rows(x)), x.sort(dim=1).values, rtol=0, atol=0)
    torch.testing.assert_close(ranks.sort_rows(x), x.sort(dim=1).values, rtol=0, atol=0)


def test_sorted_match_has_the_value_and_gradient_of_the_sort_formula():
    g = torch.Generator().manual_seed(2)
    p = torch.randn(16, 4096, generator=g, requires_grad=True)
    q = resample_sorted(torch.randn(16, 3000, generator=g).sort(dim=1).values, 4096)
    direct = ((p.sort(dim=1).values - q) ** 2).mean()
    (g_direct,) = torch.autograd.grad(direct, p)
    fast = ranks.sorted_match(p, q)
    (g_fast,) = torch.autograd.grad(fast, p)
    torch.testing.assert_close(fast, direct)
    torch.testing.assert_close(g_fast, g_direct)


def test_ties_and_half_precision():
    x = torch.zeros(4, 9000, dtype=torch.bfloat16)
    x[:, ::3] = 1
    order = ranks.argsort_rows(x)
    assert torch.equal(x.gather(1, order), x.sort(dim=1).values)
    assert ranks.sort_rows(x).dtype == torch.bfloat16
