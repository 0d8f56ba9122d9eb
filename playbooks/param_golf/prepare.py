"""
Data preparation for the CPU-scale Parameter Golf task. PROTECTED: agents must not edit this file.

Reads the shipped corpus (data/kjv_chapters.jsonl.xz, one King James Bible chapter per line),
splits it into train/val at the document level, tokenizes with a byte-level tokenizer
(vocab 256, so tokens == bytes and val_bpb = val_loss / ln 2 exactly) and writes shards in the
challenge's format: 256 little-endian int32 header (magic, version, token count, zeros) then uint16.

Usage: python prepare.py --split train|val|all [--out DIR]
"""

import argparse
import hashlib
import json
import lzma
import os
import zlib
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------
# Constants (fixed: changing any of them changes the task)
# ---------------------------------------------------------------------------

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "data" / "kjv_chapters.jsonl.xz"
VOCAB_SIZE = 256         # byte-level tokenizer: token id = byte value
VAL_EVERY = 16           # a document goes to val when crc32(id) % VAL_EVERY == 0 (~6% of bytes)
SHARD_MAGIC = 20240520   # header magic of the challenge's shard format
SHARD_VERSION = 1
HEADER_INTS = 256
SPLITS = ("train", "val")
PREPARE_VERSION = 1      # bump when the split or tokenization changes, to invalidate old shards


# ---------------------------------------------------------------------------
# Corpus, split, tokenizer
# ---------------------------------------------------------------------------

def load_documents(corpus: Path = CORPUS) -> list[dict]:
    """Return the corpus as a list of {"id", "title", "text"} documents, in file order."""
    with lzma.open(corpus, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def split_of(doc_id: str) -> str:
    """Return "val" or "train" for a document id; a stable hash, so the split never drifts."""
    return "val" if zlib.crc32(doc_id.encode("utf-8")) % VAL_EVERY == 0 else "train"


def encode(text: str) -> np.ndarray:
    """Byte-level tokenizer: UTF-8 bytes as uint16 token ids."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)


def decode(tokens: np.ndarray) -> str:
    """Inverse of encode."""
    return np.asarray(tokens, dtype=np.uint8).tobytes().decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------
# Shard files
# ---------------------------------------------------------------------------

def shard_path(split: str, out: Path) -> Path:
    return Path(out) / f"kjv_{split}_000000.bin"


def write_tokens(path: Path, tokens: np.ndarray) -> None:
    """Write one shard: int32 header (magic, version, count, zeros) then uint16 tokens."""
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, len(tokens)
    tmp = Path(f"{path}.{os.getpid()}.tmp")  # concurrent builders never share a temp file
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens, dtype="<u2").tobytes())
    tmp.replace(path)


def load_tokens(path) -> np.ndarray:
    """Read one shard and return its tokens as uint16; raises ValueError on a malformed file."""
    path = Path(path)
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if len(header) != HEADER_INTS or header[0] != SHARD_MAGIC or header[1] != SHARD_VERSION:
        raise ValueError(f"{path}: not a shard (bad magic/version in header)")
    count = int(header[2])
    expected = HEADER_INTS * 4 + 2 * count
    if path.stat().st_size != expected:
        raise ValueError(f"{path}: header says {count} tokens, file size {path.stat().st_size} != {expected}")
    return np.fromfile(path, dtype="<u2", offset=HEADER_INTS * 4)


# ---------------------------------------------------------------------------
# Idempotent build
# ---------------------------------------------------------------------------

def _source_key(split: str) -> str:
    digest = hashlib.sha256(CORPUS.read_bytes()).hexdigest()
    return f"{digest}:{split}:{VAL_EVERY}:{PREPARE_VERSION}"


def _up_to_date(path: Path, key: str) -> bool:
    meta = Path(str(path) + ".json")
    if not path.exists() or not meta.exists():
        return False
    recorded = json.loads(meta.read_text())
    return recorded.get("source") == key and recorded.get("sha256") == hashlib.sha256(path.read_bytes()).hexdigest()


def build(split: str, out: Path = HERE / "data") -> Path:
    """Write the shard for one split into out (skipped when an up-to-date shard is there); return its path."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path, key = shard_path(split, out), _source_key(split)
    if _up_to_date(path, key):
        return path
    docs = [d for d in load_documents() if split_of(d["id"]) == split]
    tokens = np.concatenate([encode(d["text"]) for d in docs])
    write_tokens(path, tokens)
    meta = {"source": key, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "documents": len(docs), "tokens": len(tokens)}
    tmp = Path(f"{path}.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    tmp.replace(Path(str(path) + ".json"))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description="Build byte-level token shards for the KJV corpus.")
    parser.add_argument("--split", choices=(*SPLITS, "all"), required=True)
    parser.add_argument("--out", type=Path, default=HERE / "data", help="output directory (default: data/ next to this file)")
    args = parser.parse_args()
    for split in SPLITS if args.split == "all" else (args.split,):
        path = build(split, args.out)
        print(f"{split}: {len(load_tokens(path)):,} tokens -> {path}")


if __name__ == "__main__":
    main()
