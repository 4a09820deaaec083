"""Turn conversations into training shards: (optionally) regenerate replies, mask, run the base model."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ..base_models import load_base_model
from ..files import write_text_atomic
from ..model.configs import base_fingerprint
from ..model.ea_model import stop_token_ids
from ..templates import encode_with_mask
from .conversations import Conversation, load_conversations
from .regenerate import regenerate, to_sharegpt
from .storage import TEXT_DIR, parse_shard_ranges, shard_name, write_shard


@torch.no_grad()
def extract_features(model, samples: list[tuple[list[int], list[int]]], save_layers: list[int],
                     tokens_per_batch: int) -> list[dict[str, torch.Tensor]]:
    """Run the base model over each (ids, mask) and keep its final-norm hidden states (and extra layers)."""
    device = model.get_output_embeddings().weight.device
    decoder = model.get_decoder()
    results: list[dict[str, torch.Tensor] | None] = [None] * len(samples)
    order = sorted(range(len(samples)), key=lambda i: len(samples[i][0]))
    batch: list[int] = []

    def flush() -> None:
        width = max(len(samples[i][0]) for i in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, : len(samples[i][0])] = torch.tensor(samples[i][0])
            attention[row, : len(samples[i][0])] = 1
        out = decoder(input_ids=ids.to(device), attention_mask=attention.to(device),
                      output_hidden_states=bool(save_layers), use_cache=False)
        for row, i in enumerate(batch):
            length = len(samples[i][0])
            sample = {"input_ids": torch.tensor(samples[i][0]), "loss_mask": torch.tensor(samples[i][1]),
                      "hidden_state": out.last_hidden_state[row, :length].float().cpu()}
            for layer in save_layers:
                sample[f"hidden_state_layer{layer}"] = out.hidden_states[layer][row, :length].float().cpu()
            results[i] = sample
        batch.clear()

    for i in order:
        if batch and (len(batch) + 1) * len(samples[i][0]) > tokens_per_batch:
            flush()
        batch.append(i)
    if batch:
        flush()
    return results


def write_jsonl_atomic(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def shard_conversations(plan: dict, conversations: list[Conversation], index: int) -> list[Conversation]:
    size = plan["shard_size"]
    return conversations[index * size:(index + 1) * size]


def run_worker(plan: dict, worker: int, num_workers: int, device: str | None = None, progress_position: int = 0,
               on_shard=None, only_shards: list[int] | None = None) -> None:
    """Process this worker's shards (round-robin), skipping those already written.

    ``only_shards``: process only these shard indices (recompute the part of a large data set needed first).

    ``on_shard`` is called after each finished shard (the single-process run refreshes the manifest
    there, so training can start on partial data)."""
    outdir = Path(plan["outdir"])
    conversations, _ = load_conversations(plan["data_path"], skip_invalid=plan["skip_invalid"])
    conversations = [conversations[i] for i in plan["order"]]
    wanted = range(plan["num_shards"]) if only_shards is None else sorted({i for i in only_shards if i < plan["num_shards"]})
    todo = [i for n, i in enumerate(wanted) if n % num_workers == worker and not (outdir / shard_name(i)).exists()]
    if not todo:
        return
    model, tokenizer = load_base_model(plan["base_model_path"], torch_dtype=plan["dtype"], device_map=device)
    stop_ids = stop_token_ids(model)
    metadata = {"base_model": plan["base_model"], "base_fingerprint": base_fingerprint(model.config),
                "template": str(plan["chat_template"])}
    bar = tqdm(total=sum(len(shard_conversations(plan, conversations, i)) for i in todo), unit="conv",
               desc=f"worker {worker}", position=progress_position, dynamic_ncols=True)
    tokens, generated, begin = 0, 0, time.perf_counter()
    for index in todo:
        batch = shard_conversations(plan, conversations, index)
        skipped: dict[str, int] = {}
        saved_text = outdir / TEXT_DIR / shard_name(index).replace(".safetensors", ".jsonl")
        restoring = plan["regenerate"] and saved_text.is_file()
        if restoring:  # answers kept from an earlier run (or restored from a copy): only their features are missing
            restored = load_conversations(saved_text)[0]
            if len(restored) < len(batch):
                skipped["left unanswered when the answers were generated"] = len(batch) - len(restored)
            batch = restored
        if plan["regenerate"] and not restoring:  # features come from the generating passes themselves
            generator = torch.Generator().manual_seed(plan["seed"] * 1_000_003 + index)
            answered, samples = regenerate(model, tokenizer, batch, plan["chat_template"], stop_ids,
                                           plan["max_new_tokens"], plan["max_length"] - plan["max_new_tokens"] - 1,
                                           plan["batch_size"], plan["max_turns"], plan["temperature"],
                                           plan["save_layers"], generator, skipped)
            samples = [{k: v[:plan["max_length"]] for k, v in s.items()} for s in samples]
            write_jsonl_atomic(saved_text, [to_sharegpt(c) for c in answered])
            generated += sum(int(s["loss_mask"].sum()) for s in samples)
        else:
            replied = [c for c in batch if c.has_reply]
            if len(replied) < len(batch):
                skipped["without an assistant reply (pass --regenerate to answer them)"] = len(batch) - len(replied)
            encoded = [encode_with_mask(tokenizer, c.messages, plan["chat_template"], stop_ids, plan["max_length"])
                       for c in replied]
            samples = extract_features(model, encoded, plan["save_layers"], plan["tokens_per_batch"]) if encoded else []
        kept = [s for s in samples if int(s["loss_mask"].sum()) > 0]
        if len(kept) < len(samples):
            skipped[f"with no assistant token within --max-length {plan['max_length']}"] = len(samples) - len(kept)
        shard_metadata = {**metadata, "conversations": str(len(kept)), "skipped": json.dumps(skipped)}
        if kept:
            tokens += write_shard(outdir / shard_name(index), kept, shard_metadata)
        else:  # an empty shard is still a finished shard: record it so a rerun skips it
            write_shard(outdir / shard_name(index), [{"input_ids": torch.zeros(0, dtype=torch.int32),
                                                      "loss_mask": torch.zeros(0, dtype=torch.uint8)}], shard_metadata)
        if on_shard is not None:
            on_shard()
        bar.update(len(shard_conversations(plan, conversations, index)))
        elapsed = time.perf_counter() - begin
        postfix = {"tok_s": f"{tokens / elapsed:.0f}"}
        if generated:
            postfix["answer_tok_s"] = f"{generated / elapsed:.0f}"
        bar.set_postfix(**postfix)
    bar.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One data-generation worker (started by jakiro.ge_data.allocation).")
    parser.add_argument("--plan", required=True, help="plan.json written by allocation")
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--num-workers", type=int, required=True)
    parser.add_argument("--device", default=None)
    parser.add_argument("--only-shards", default=None, help="process only these shards, e.g. '0-3,7'")
    args = parser.parse_args(argv)
    plan = json.loads(Path(args.plan).read_text())
    if plan.get("threads_per_worker"):
        torch.set_num_threads(plan["threads_per_worker"])
    only = parse_shard_ranges(args.only_shards) if args.only_shards else None
    run_worker(plan, args.worker, args.num_workers, args.device, progress_position=args.worker, only_shards=only)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
