"""The panel kernel: products of 1..64+ rows equal `F.linear` up to fp32 rounding, for odd shapes and with bias."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jakiro.model import panel_gemm


@pytest.fixture(scope="module")
def kernel():
    module = panel_gemm.load()
    if module is None:
        pytest.skip(f"LOUD: the panel kernel could not be built here ({panel_gemm.load_error()})")
    return module


@pytest.mark.parametrize("n,k", [(576, 576), (192, 576), (37, 48), (7, 5), (1, 16)])
def test_products_match_f_linear(kernel, n, k):
    gen = torch.Generator().manual_seed(n * 1000 + k)
    weight, bias = torch.randn(n, k, generator=gen), torch.randn(n, generator=gen)
    panels = kernel.pack_panels(weight)
    width = kernel.panel_width()
    assert panels.shape == ((n + width - 1) // width, k, width)
    for rows in (1, 2, 3, 5, 8, 9, 16, 17, 33, 70):
        x = torch.randn(2, rows, k, generator=gen)[1]  # a non-contiguous slice's rows are made contiguous
        expected = F.linear(x, weight, bias)
        got = kernel.panel_linear(x, panels, n, bias)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(kernel.panel_linear(x[None], panels, n, None), F.linear(x, weight)[None],
                                   atol=1e-4, rtol=1e-4)


def test_results_are_deterministic_and_independent_of_other_rows(kernel):
    weight = torch.randn(300, 64)
    panels = kernel.pack_panels(weight)
    x = torch.randn(8, 64)
    first = kernel.panel_linear(x, panels, 300, None)
    assert torch.equal(first, kernel.panel_linear(x, panels, 300, None))
    other = x.clone()
    other[3:] = torch.randn(5, 64)  # the other rows of a group never touch a row's sums
    assert torch.equal(kernel.panel_linear(other, panels, 300, None)[:3], first[:3])


def test_wrong_inputs_are_refused(kernel):
    panels = kernel.pack_panels(torch.randn(20, 32))
    with pytest.raises(RuntimeError, match="does not match"):
        kernel.panel_linear(torch.randn(2, 31), panels, 20, None)
    with pytest.raises(RuntimeError, match="fp32"):
        kernel.panel_linear(torch.randn(2, 32).double(), panels, 20, None)


def test_build_name_tracks_source_and_machine():
    name = panel_gemm.build_name()
    assert name.startswith("jakiro_panel_gemm_") and name == panel_gemm.build_name()
    assert panel_gemm.build_dir().name == name


def test_bf16_weights_are_widened_and_summed_in_fp32(kernel):
    gen = torch.Generator().manual_seed(5)
    weight = torch.randn(70, 40, generator=gen).bfloat16()
    panels = kernel.pack_panels(weight)
    assert panels.dtype == torch.bfloat16
    for rows in (1, 7, 12):
        x = torch.randn(rows, 40, generator=gen)
        got = kernel.panel_linear(x, panels, 70, None)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, F.linear(x, weight.float()), atol=1e-4, rtol=1e-4)
