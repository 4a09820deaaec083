"""A tiny SentencePiece LLaMA tokenizer, laid out like a Vicuna / LLaMA-2 checkpoint's files.

Those checkpoints ship ``tokenizer.model`` (a SentencePiece model) and a ``tokenizer_config.json``
naming ``LlamaTokenizer``, often without a ``tokenizer.json``; `transformers` converts the
SentencePiece model on load, which needs ``sentencepiece`` and ``protobuf``. The model here is
trained in a second on a few sentences (byte fallback on, so any text encodes).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from tests.helpers.tiny_models import SENTENCES, build_tiny_base

SPM_SENTENCES = SENTENCES + [
    "A chat between a curious user and an artificial intelligence assistant.",
    "USER: hello ASSISTANT: hi there [INST] <<SYS>> You are a helpful assistant <</SYS>> [/INST]",
    "café naïve résumé and a few more words",
]
TOKENIZER_CONFIG = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
                    "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False, "legacy": False,
                    "model_max_length": 2048}


def train_sentencepiece(vocab_size: int = 340) -> bytes:
    """A BPE SentencePiece model with LLaMA's special ids (unk 0, <s> 1, </s> 2), as bytes."""
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SPM_SENTENCES), model_writer=model, vocab_size=vocab_size, model_type="bpe",
        character_coverage=1.0, byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        normalization_rule_name="identity", num_threads=1, minloglevel=2)
    return model.getvalue()


def save_sentencepiece_tokenizer(folder: str | Path) -> Path:
    """``tokenizer.model`` + ``tokenizer_config.json`` only, as in the original Vicuna checkpoints."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(train_sentencepiece())
    (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
    return folder


def save_sentencepiece_llama(folder: str | Path, seed: int = 0) -> Path:
    """A tiny random LLaMA whose tokenizer is the SentencePiece one above (loaded by jakiro like any base)."""
    from transformers import AutoTokenizer

    folder = save_sentencepiece_tokenizer(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    build_tiny_base(tokenizer, seed=seed).save_pretrained(folder)
    return folder
