"""PackedLinears: packed products (MKL and the panel kernel) equal `F.linear` up to rounding, only inside
`active()`, only for packed row counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from jakiro.model import panel_gemm
from jakiro.model.fast_linear import PackedLinears, decoder_linears, mkl_packing_available

pytestmark = pytest.mark.skipif(not mkl_packing_available(), reason="LOUD: this torch build has no MKL packed linear")


def make_linears(seed: int = 0) -> list[nn.Linear]:
    torch.manual_seed(seed)
    return [nn.Linear(48, 80, bias=True), nn.Linear(80, 48, bias=False)]


@torch.no_grad()
def test_packed_rows_match_f_linear_and_other_rows_run_the_module_itself():
    linears = make_linears()
    packed = PackedLinears(linears, backend="mkl")
    packed.pack(6)
    x6, x3 = torch.randn(1, 6, 48), torch.randn(3, 48)
    with packed.active():
        y6 = linears[0](x6)
        y3 = linears[0](x3)
        z6 = linears[1](torch.randn(6, 80))
    assert packed.packed_calls == 2
    torch.testing.assert_close(y6, F.linear(x6, linears[0].weight, linears[0].bias), atol=1e-5, rtol=1e-5)
    assert torch.equal(y3, F.linear(x3, linears[0].weight, linears[0].bias)), "an unpacked row count is untouched"
    assert z6.shape == (6, 48)


@torch.no_grad()
def test_forward_is_swapped_only_inside_the_block():
    linears = make_linears()
    packed = PackedLinears(linears, backend="mkl")
    packed.pack(4)
    with packed.active():
        assert all("forward" in m.__dict__ for m in linears)
        with packed.active():  # nested blocks keep the swap until the outermost ends
            pass
        assert all("forward" in m.__dict__ for m in linears)
    assert all("forward" not in m.__dict__ for m in linears)
    x = torch.randn(4, 48)
    linears[0](x)
    assert packed.packed_calls == 0, "outside the block the module's own forward runs"


def test_autograd_runs_the_module_itself():
    linears = make_linears()
    packed = PackedLinears(linears, backend="mkl")
    packed.pack(4)
    x = torch.randn(4, 48, requires_grad=True)
    with packed.active():
        linears[0](x).sum().backward()
    assert packed.packed_calls == 0 and x.grad is not None


@torch.no_grad()
def test_changed_weights_are_never_served_from_a_stale_pack():
    linears = make_linears()
    packed = PackedLinears(linears, backend="mkl")
    packed.pack(5)
    linears[0].weight.mul_(2.0)  # in place: the packed copy is now stale
    x = torch.randn(5, 48)
    with packed.active():
        stale = linears[0](x)
    assert torch.equal(stale, F.linear(x, linears[0].weight, linears[0].bias))
    assert packed.packed_calls == 0
    packed.pack(5)  # repacks from the new weights
    with packed.active():
        fresh = linears[0](x)
    assert packed.packed_calls == 1
    torch.testing.assert_close(fresh, stale, atol=1e-5, rtol=1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match="2 or more"):
        PackedLinears(make_linears(), backend="mkl").pack(1)
    with pytest.raises(TypeError, match="nn.Linear"):
        PackedLinears([nn.Conv1d(2, 2, 1)])


def test_decoder_linears_cover_the_layers_not_the_output_head(tiny_base):
    base = tiny_base("llama")
    linears = decoder_linears(base)
    assert len(linears) == 7 * base.config.num_hidden_layers  # q k v o gate up down
    assert base.lm_head not in linears


def test_panels_serve_every_row_count_up_to_the_limit():
    from jakiro.model.fast_linear import PANEL_MAX_ROWS

    linears = make_linears()
    packed = PackedLinears(linears, backend="panels")
    if packed.backend != "panels":
        pytest.skip(f"LOUD: the panel kernel could not be built here ({panel_gemm.load_error()})")
    packed.pack(8)  # one copy for every count
    assert packed.rows == tuple(range(2, PANEL_MAX_ROWS + 1))
    with torch.no_grad(), packed.active():
        for rows in (2, 3, 8, 13, PANEL_MAX_ROWS):
            x = torch.randn(1, rows, 48)
            torch.testing.assert_close(linears[0](x), F.linear(x, linears[0].weight, linears[0].bias),
                                       atol=1e-5, rtol=1e-5)
        calls = packed.packed_calls
        for rows in (1, PANEL_MAX_ROWS + 1):
            x = torch.randn(rows, 48)
            assert torch.equal(linears[0](x), F.linear(x, linears[0].weight, linears[0].bias))
        assert packed.packed_calls == calls, "one row and too many rows run the module itself"
    assert packed.packed_calls == 5


def test_backend_choice(monkeypatch):
    monkeypatch.setenv("JAKIRO_FAST_KERNEL", "mkl")
    assert PackedLinears(make_linears()).backend == "mkl"
    with pytest.raises(ValueError, match="backend"):
        PackedLinears(make_linears(), backend="cuda")
