"""Tiny random models saved as real folders, so commands that load from paths can be tested in seconds.

`build_tiny_tokenizer` makes a word-level tokenizer with a chat template; `save_tiny_base` writes a
2-layer Llama next to it; `save_tiny_head` writes a randomly initialised draft head for that base.
"""

from __future__ import annotations

from pathlib import Path

import torch

SENTENCES = [
    "the cat sat on the mat and the dog sat on the log",
    "write a short poem about the sea and the sky",
    "now make it rhyme and keep it short",
    "what is two plus two and why",
    "explain your answer step by step please",
    "tell me a story about a small robot",
    "summarize the story in one line",
]
SPECIAL_TOKENS = ["<unk>", "<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} </s> {% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def build_tiny_tokenizer():
    """A word-level `PreTrainedTokenizerFast` over a few sentences, with a simple chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS))
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                        bos_token="<s>", eos_token="</s>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_base(tokenizer, seed: int = 0, avoid_eos: bool = True, hidden_size: int = 32, layers: int = 2,
                    context: int = 512):
    """A random 2-layer Llama.

    With ``avoid_eos`` the EOS logit is pinned at 0 while the other logits are scaled up, so the
    best token is almost surely not EOS and answers run to ``max_new_token`` (long enough to
    measure); without it the model stops wherever its random weights say."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=context, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    if avoid_eos:
        with torch.no_grad():
            model.lm_head.weight.mul_(50.0)
            model.lm_head.weight[tokenizer.eos_token_id].zero_()
    return model


def save_tiny_base(folder: str | Path, seed: int = 0, avoid_eos: bool = True) -> Path:
    """Write a tiny base model and its tokenizer to ``folder`` (a normal Hugging Face folder)."""
    folder = Path(folder)
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_base(tokenizer, seed=seed, avoid_eos=avoid_eos)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_head(base_folder: str | Path, head_folder: str | Path, seed: int = 0, **draft_options) -> Path:
    """Write a randomly initialised draft head (Jakiro by default; ``num_experts=1`` gives EAGLE-2)."""
    from jakiro import load_base_model
    from jakiro.model.ea_model import EaModel

    base, tokenizer = load_base_model(str(base_folder), torch_dtype="float32", device_map="cpu")
    ea = EaModel.from_base_model(base, tokenizer, total_token=8, depth=3, top_k=3, seed=seed, **draft_options)
    ea.ea_layer.save_pretrained(head_folder)
    return Path(head_folder)
