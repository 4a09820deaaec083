"""Bad values through the Python API: a `ConfigError` naming the value, not a deep IndexError or TypeError."""

from __future__ import annotations

import pytest
import torch

from jakiro.errors import ConfigError
from jakiro.model.ea_model import EaModel


@pytest.fixture(scope="module")
def ea(llama_base):
    return EaModel.from_base_model(llama_base, total_token=8, depth=3, top_k=3, seed=0)


@pytest.mark.parametrize("generate", ["eagenerate", "naivegenerate"])
@pytest.mark.parametrize("bad, position", [(96, 2), (10_000, 1), (-1, 0)])
def test_token_ids_outside_the_vocabulary_are_named(ea, generate, bad, position):
    ids = torch.tensor([[5, 7, 9]])
    ids[0, position] = bad
    with pytest.raises(ConfigError) as error:
        getattr(ea, generate)(ids, max_new_tokens=4)
    message = str(error.value)
    assert f"token id {bad} at prompt position {position} is outside the vocabulary (ids 0..95)" in message
    assert "tokenizer" in message and "\n" not in message
    assert torch.equal(getattr(ea, generate)(torch.tensor([[5, 7, 9]]), max_new_tokens=4)[0, :3],
                       torch.tensor([5, 7, 9]))  # the model still works afterwards


@pytest.mark.parametrize("option, value", [("total_token", "60"), ("total_token", 8.0), ("depth", "5"),
                                           ("top_k", None), ("total_token", True)])
def test_tree_options_must_be_integers(llama_base, option, value):
    options = {"total_token": 8, "depth": 3, "top_k": 3, option: value}
    with pytest.raises(ConfigError) as error:
        EaModel.from_base_model(llama_base, seed=0, **options)
    assert str(error.value).startswith(f"{option} must be an integer, got {value!r}")
