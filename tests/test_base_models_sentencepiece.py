"""Base models with a SentencePiece tokenizer (Vicuna, LLaMA, LLaMA-2): they load, and lossless decoding holds.

The tokenizer is trained in the test and saved as those checkpoints ship it (``tokenizer.model`` +
``tokenizer_config.json`` naming ``LlamaTokenizer``, no ``tokenizer.json``).
"""

from __future__ import annotations

import sys

import pytest
import torch

from jakiro import EaModel, load_base_model
from jakiro.chat import prompt_ids
from jakiro.errors import ConfigError
from tests.helpers.sentencepiece_models import save_sentencepiece_llama


@pytest.fixture(scope="module")
def spm_llama_dir(tmp_path_factory):
    return save_sentencepiece_llama(tmp_path_factory.mktemp("vicuna-like") / "tiny-vicuna")


def test_a_sentencepiece_llama_tokenizer_loads_and_decodes_lossless(spm_llama_dir):
    assert (spm_llama_dir / "tokenizer.model").is_file() and not (spm_llama_dir / "tokenizer.json").exists()
    model, tokenizer = load_base_model(str(spm_llama_dir))
    assert type(tokenizer).__name__ == "LlamaTokenizer"
    ids = tokenizer("tell me a story about a small robot").input_ids
    assert ids[0] == tokenizer.bos_token_id == 1 and tokenizer.eos_token_id == 2 and len(ids) > 2
    assert tokenizer.decode(ids, skip_special_tokens=True) == "tell me a story about a small robot"
    assert tokenizer.decode(tokenizer("café, 日本").input_ids, skip_special_tokens=True) == "café, 日本"  # byte fallback

    prompt = torch.tensor([prompt_ids(tokenizer, [{"role": "user", "content": "what is two plus two"}],
                                      template="vicuna_v1.1")])
    assert prompt[0, 0] == tokenizer.bos_token_id
    ea = EaModel.from_base_model(model, tokenizer, total_token=8, depth=3, top_k=3, seed=0)
    expected = model.generate(prompt, do_sample=False, max_new_tokens=12)
    assert torch.equal(ea.eagenerate(prompt, max_new_tokens=12), expected)


@pytest.mark.parametrize("missing", ["sentencepiece", "google.protobuf"])
def test_without_sentencepiece_the_error_names_the_packages(spm_llama_dir, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # as if the package were not installed
    with pytest.raises(ConfigError) as error:
        load_base_model(str(spm_llama_dir))
    message = str(error.value)
    assert "\n" not in message and "tokenizer.model" in message
    assert "pip install sentencepiece protobuf" in message
