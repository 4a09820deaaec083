"""Self-distillation: answers equal the base model's own decoding, features equal a fresh forward."""

from __future__ import annotations

import json

import torch

from jakiro.ge_data.conversations import load_conversations
from jakiro.ge_data.regenerate import generate_with_features


def _prompts() -> list[list[int]]:
    """Prompts of different lengths (left padding in the batch)."""
    return [[3, 17, 22, 8], [40, 41], [7, 7, 12, 60, 33, 81, 2], [90]]


def test_replies_match_generate_and_features_match_a_fresh_forward(tiny_base):
    model = tiny_base()
    prompts = _prompts()
    # stop ids chosen so that rows finish at different steps: finished rows leave the batch mid-way
    stop_ids = {5, 9}
    out = generate_with_features(model, prompts, max_new_tokens=12, stop_ids=stop_ids, save_layers=[1],
                                 compact_fraction=0.01)
    lengths = set()
    for prompt, answer in zip(prompts, out):
        reference = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                                   eos_token_id=sorted(stop_ids), pad_token_id=0)[0, len(prompt):].tolist()
        assert answer.reply == reference
        assert answer.tokens[:len(prompt)] == prompt
        with torch.no_grad():
            fresh = model.get_decoder()(input_ids=torch.tensor([answer.tokens]), output_hidden_states=True)
        torch.testing.assert_close(answer.features, fresh.last_hidden_state[0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(answer.layers[1], fresh.hidden_states[1][0], atol=1e-4, rtol=1e-4)
        lengths.add(len(answer.reply))
    assert len(lengths) > 1, "the test needs rows that finish at different steps"


def test_sampled_replies_are_reproducible_with_a_seeded_generator(tiny_base):
    model = tiny_base()
    prompts = _prompts()
    runs = [generate_with_features(model, prompts, 8, set(), temperature=1.0,
                                   generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert [a.tokens for a in runs[0]] == [a.tokens for a in runs[1]]
    greedy = generate_with_features(model, prompts, 8, set())
    assert [a.tokens for a in runs[0]] != [a.tokens for a in greedy]


def test_regenerated_text_is_saved_and_reloadable(data_file, tiny_base_dir, tmp_path):
    from jakiro.ge_data.allocation import main

    out = tmp_path / "regen"
    main(["--data-path", str(data_file), "--base-model-path", str(tiny_base_dir), "--outdir", str(out),
          "--shard-size", "2", "--regenerate", "--max-new-tokens", "6", "--max-turns", "2"])
    manifest = json.loads((out / "manifest.json").read_text())
    texts = sorted((out / "conversations").glob("shard_*.jsonl"))
    assert len(texts) == len(manifest["shards"])
    reloaded = [c for path in texts for c in load_conversations(path)[0]]
    assert len(reloaded) == manifest["conversations"]
    assert all(c.has_reply for c in reloaded)


def test_a_shard_with_saved_answers_is_restored_from_its_text(data_file, tiny_base_dir, tmp_path):
    """Only the answers are costly: a lost feature shard is rebuilt from the saved text, not regenerated."""
    from safetensors.torch import load_file

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jakiro.ge_data.allocation import main
    from jakiro.templates import encode_with_mask

    out = tmp_path / "regen"
    args = ["--data-path", str(data_file), "--base-model-path", str(tiny_base_dir), "--outdir", str(out),
            "--shard-size", "2", "--regenerate", "--max-new-tokens", "6", "--max-turns", "2", "--temperature", "1"]
    main(args)
    shard = out / "shard_00000.safetensors"
    original = load_file(str(shard))
    shard.unlink()
    text = out / "conversations" / "shard_00000.jsonl"
    records = [json.loads(line) for line in text.read_text().splitlines()]
    for record in records:  # edited answers prove the rerun reads the text instead of generating again
        record["conversations"][1]["value"] = "the cat sat on the mat"
    text.write_text("".join(json.dumps(r) + "\n" for r in records))
    main(args)
    restored = load_file(str(shard))
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    saved = load_conversations(text)[0]
    expected = [encode_with_mask(tokenizer, c.messages) for c in saved]
    assert restored["input_ids"].tolist() == [t for ids, _ in expected for t in ids]
    assert restored["loss_mask"].tolist() == [m for _, mask in expected for m in mask]
    assert not torch.equal(restored["input_ids"], original["input_ids"])
    model = AutoModelForCausalLM.from_pretrained(tiny_base_dir)
    with torch.no_grad():
        first = model.get_decoder()(input_ids=torch.tensor([expected[0][0]])).last_hidden_state[0]
    torch.testing.assert_close(restored["hidden_state"][:len(first)].float(), first, atol=0.02, rtol=0.02)
