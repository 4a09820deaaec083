"""A data folder that views the first N shards of another: train a stage on part of a growing data set.

Data generation appends shards to one folder for hours; a training stage (or a comparison on a fixed
held-out split) needs a folder that stays the same while that goes on. This writes one whose shards (and
regenerated conversations) are symbolic links to the source's first N finished shards, with a complete
manifest of its own: the same conversations, in the same order, so its held-out split (the last
conversations) is fixed by N. No data is copied.

    python -m jakiro.ge_data.subset --data ~/.cache/jakiro/data/smollm2-selfdistill --shards 40 --out sd40

``--shard-ranges 94-173`` views chosen shards instead (in index order): a stage that trains on the data added
since the last one, or the part whose features a fresh machine has recomputed so far.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..commands import exit_on_error
from ..errors import ConfigError
from ..files import write_json_atomic
from .storage import MANIFEST, TEXT_DIR, list_shards, parse_shard_ranges, read_manifest, shard_name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jakiro.ge_data.subset", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="source data folder (written by jakiro.ge_data.allocation)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--shards", type=int, help="how many of its first shards to take")
    which.add_argument("--shard-ranges", metavar="RANGES", help="which shards to take, e.g. '94-173' or '0-3,7'")
    parser.add_argument("--out", required=True, help="new folder (links + manifest.json); rerunning with the same "
                                                     "source and count is a no-op")
    return parser


def make_subset(source: str | Path, shards: int | list[int], out: str | Path) -> dict:
    """Write ``out`` as a view of the first ``shards`` shards of ``source`` (or of the shards with these
    indices, given a list); returns its manifest."""
    source, out = Path(source).resolve(), Path(out)
    manifest = read_manifest(source)
    names = list(manifest.get("shards", []))
    if isinstance(shards, int):
        if shards < 1:
            raise ConfigError(f"--shards must be at least 1, got {shards}")
        if shards > len(names):
            raise ConfigError(f"{source} has {len(names)} finished shard(s), fewer than --shards {shards}: "
                              f"generate more data or take fewer")
    indices = list(range(shards)) if isinstance(shards, int) else list(shards)
    chosen = [shard_name(index) for index in indices]
    missing = [name for name in chosen if name not in names]
    if missing:  # several workers leave gaps until every earlier shard is done
        raise ConfigError(f"{source} lacks {missing[0]} ({len(missing)} of the {len(chosen)} shards asked for are "
                          f"not finished): rerun data generation on it until they are all written, or take fewer")
    if (out / MANIFEST).is_file():
        existing = read_manifest(out)
        if existing.get("subset_of") == str(source) and existing.get("shards") == chosen:
            return existing
        raise ConfigError(f"{out} already holds other data: pass a new --out")
    out.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        _link(source / name, out / name)
        text = (source / TEXT_DIR / name).with_suffix(".jsonl")
        if text.is_file():
            (out / TEXT_DIR).mkdir(exist_ok=True)
            _link(text, out / TEXT_DIR / text.name)
    kept = [shard for shard in list_shards(out) if shard.path.name in chosen]
    subset = dict(manifest)
    subset.update({"shards": chosen, "conversations": sum(len(s) for s in kept),
                   "tokens": sum(int(s.offsets[-1]) for s in kept), "complete": True,
                   "subset_of": str(source), "subset_shards": len(indices),
                   "subset_indices": indices})
    write_json_atomic(out / MANIFEST, subset, sort_keys=True)
    return subset


def _link(target: Path, link: Path) -> None:
    if not target.is_file():
        raise ConfigError(f"{target} is listed in the manifest but missing: rerun data generation on {target.parent}")
    if link.is_symlink() or link.exists():
        if link.resolve() == target.resolve():
            return
        raise ConfigError(f"{link} already exists and is not a link to {target}: pass a new --out")
    tmp = link.with_name(link.name + ".tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target.resolve(), tmp)
    os.replace(tmp, link)


def run(args: argparse.Namespace) -> dict:
    shards = parse_shard_ranges(args.shard_ranges, "--shard-ranges") if args.shard_ranges else args.shards
    manifest = make_subset(args.data, shards, args.out)
    which = f"the first {len(manifest['shards'])}" if args.shard_ranges is None else f"{len(manifest['shards'])} chosen"
    print(f"{args.out}: {manifest['conversations']} conversations, {manifest['tokens']} tokens in {which} "
          f"shard(s) of {manifest['subset_of']}")
    return manifest


def main(argv: list[str] | None = None) -> None:
    exit_on_error(build_parser(), run, argv)


if __name__ == "__main__":
    main()
