"""The core model card's pieces: ``--choice-note`` on an EAGLE-style card, and the per-method dispatch."""

from __future__ import annotations

import json

from jakiro.methods import model_card_writer
from jakiro.train.model_card import card_text, main


def fake_run(tmp_path):
    """A finished EAGLE-style run written by hand (the fields `card_text` reads), with its data manifest."""
    run, data = tmp_path / "run", tmp_path / "data"
    (run / "head").mkdir(parents=True)
    data.mkdir()
    (run / "head" / "config.json").write_text(json.dumps({
        "method": "jakiro", "base_model": "tiny", "num_experts": 2, "contrastive": True, "draft_vocab_size": None,
        "vocab_size": 64}))
    record = {"train_tokens": 100, "train_loss": 2.0, "holdout_loss": 1.5, "holdout_top1": 0.4,
              "holdout_simulated_accept_length": 1.5, "holdout_acc_per_step": [0.4, 0.1], "epoch_seconds": 36.0}
    (run / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, **record}) + "\n" for e in range(2)))
    (run / "run_config.json").write_text(json.dumps({"draft": {}, "train": {"lr": 0.001}}))
    (data / "manifest.json").write_text(json.dumps({
        "data_path": "/x/prompts.jsonl", "data_sha256": "abc", "conversations": 3, "tokens": 300, "max_length": 64,
        "chat_template": None, "regenerate": True}))
    return run, data


def test_choice_note_is_appended_and_leaves_the_card_otherwise_unchanged(tmp_path):
    run, data = fake_run(tmp_path)
    plain = card_text(run / "head", run, data, None, "CPU (test)")
    assert "A **jakiro** draft head for `tiny` (2 expert(s)" in plain and "## Notes" not in plain
    assert plain.endswith("## Measured\nnot measured yet\n")
    assert card_text(run / "head", run, data, None, "CPU (test)", "  ") == plain  # a blank note adds nothing
    noted = card_text(run / "head", run, data, None, "CPU (test)", "trained on the first 3 shards\n")
    assert noted == plain + "\n## Notes\ntrained on the first 3 shards\n"
    main(["--head", str(run / "head"), "--run", str(run), "--data", str(data), "--device", "CPU (test)",
          "--choice-note", "trained on the first 3 shards"])
    assert (run / "head" / "README.md").read_text() == noted


def test_card_writer_by_method():
    from kangaroo.train.model_card import card_text as kangaroo_card

    assert model_card_writer("kangaroo") is kangaroo_card
    for method in ("jakiro", "eagle2", "jakiro_star", "unknown", None):
        assert model_card_writer(method) is None  # the core's EAGLE-style card


def test_answer_start_weighting_is_stated_only_when_used(tmp_path):
    run, data = fake_run(tmp_path)
    assert "Answer-start weighting" not in card_text(run / "head", run, data, None, "CPU (test)")
    (run / "run_config.json").write_text(json.dumps({"draft": {}, "train": {
        "lr": 0.001, "answer_start_weight": 3.0, "answer_start_tokens": 64}}))
    card = card_text(run / "head", run, data, None, "CPU (test)")
    assert "- Answer-start weighting: an answer's token i weighs 1 + 2 · max(0, 1 − i/64)" in card


def test_fixed_holdout_is_stated_only_when_used(tmp_path):
    run, data = fake_run(tmp_path)
    assert "- Held-out:" not in card_text(run / "head", run, data, None, "CPU (test)")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    records[-1]["holdout_from"] = "/cache/data/sd73"
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    card = card_text(run / "head", run, data, None, "CPU (test)")
    assert "- Held-out: the held-out split of the data view `sd73` (`--holdout-from`)" in card
    assert "/cache/data" not in card  # the view's name, not a path on the training machine
