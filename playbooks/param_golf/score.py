"""
Independent scorer for the CPU-scale Parameter Golf task. PROTECTED: agents must not edit this file.

Usage: python /path/to/pristine/score.py --run-dir RUNDIR

RUNDIR is where training ran: it holds the (edited) train_gpt.py and final_model.int8.ptz.
The validation shard is built by the prepare.py next to THIS file, into this file's own data/,
so nothing in RUNDIR can change what is scored. train_gpt.py is imported (not run) and must expose
load_artifact(path) -> nn.Module whose forward maps token ids (B, T) to logits (B, T, 256);
the model may set .seq_len to choose the evaluation window length.
Prints `---` then key: value lines. Exit code 1 when the artifact is missing or the model is not causal.
"""

import argparse
import importlib.util
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import prepare  # noqa: E402  (the pristine sibling, never RUNDIR's copy)

# ---------------------------------------------------------------------------
# Constants (fixed by the task)
# ---------------------------------------------------------------------------

VAL_MAX_TOKENS = 131072         # score the first 128 Ki val tokens (about half the val split) to keep eval to seconds
DEFAULT_SEQ_LEN = 256           # evaluation window when the model does not set .seq_len
MAX_SEQ_LEN = 4096              # cap on a model-chosen window
EVAL_BATCH_TOKENS = 16384       # tokens per forward pass
CAUSAL_TOLERANCE = 1e-4         # max |logit change| allowed in the unperturbed prefix
CODE_FILE = "train_gpt.py"
ARTIFACT = "final_model.int8.ptz"


def fail(message: str, code: int = 1) -> None:
    print(f"score.py: {message}", file=sys.stderr)
    sys.exit(code)


def import_train_module(path: Path):
    """Import the run's train_gpt.py from its file path under a private module name (runs no training)."""
    spec = importlib.util.spec_from_file_location("hive_scored_train_gpt", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


@torch.no_grad()
def is_causal(model, seq_len: int, seed: int = 0) -> bool:
    """Perturb the second half of a random window; the first half's logits must not move."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, prepare.VOCAB_SIZE, (1, seq_len), generator=g)
    y = x.clone()
    half = seq_len // 2
    y[:, half:] = torch.randint(0, prepare.VOCAB_SIZE, (1, seq_len - half), generator=g)
    a, b = model(x)[:, :half].float(), model(y)[:, :half].float()
    return bool(torch.isfinite(a).all()) and (a - b).abs().max().item() <= CAUSAL_TOLERANCE


@torch.no_grad()
def evaluate(model, tokens: np.ndarray, seq_len: int) -> tuple[float, int]:
    """Mean next-token cross-entropy (nats) over non-overlapping windows of tokens, and the count scored."""
    tokens = torch.from_numpy(tokens.astype(np.int64))
    n_windows = (len(tokens) - 1) // seq_len
    per_batch = max(1, EVAL_BATCH_TOKENS // seq_len)
    total, count = 0.0, 0
    for start in range(0, n_windows, per_batch):
        rows = range(start, min(start + per_batch, n_windows))
        window = torch.stack([tokens[r * seq_len : r * seq_len + seq_len + 1] for r in rows])
        logits = model(window[:, :-1]).float()
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), window[:, 1:].reshape(-1), reduction="sum").item()
        count += window[:, 1:].numel()
    return total / count, count


def main() -> None:
    parser = argparse.ArgumentParser(description="Score a Parameter Golf run directory on the validation split.")
    parser.add_argument("--run-dir", type=Path, required=True, help="directory holding train_gpt.py and the artifact")
    args = parser.parse_args()
    run_dir = args.run_dir.resolve()
    code_path, artifact_path = run_dir / CODE_FILE, run_dir / ARTIFACT
    if not code_path.is_file():
        fail(f"{code_path} not found", 2)
    if not artifact_path.is_file():
        fail(f"artifact {artifact_path} not found: did train_gpt.py finish?")

    code_bytes = len(code_path.read_bytes())
    model_bytes = artifact_path.stat().st_size
    torch.set_num_threads(1)
    torch.manual_seed(0)
    val = prepare.load_tokens(prepare.build("val", HERE / "data"))[:VAL_MAX_TOKENS]

    t0 = time.time()
    module = import_train_module(code_path)
    model = module.load_artifact(artifact_path)
    model.eval()
    seq_len = min(int(getattr(model, "seq_len", DEFAULT_SEQ_LEN) or DEFAULT_SEQ_LEN), MAX_SEQ_LEN)
    if not is_causal(model, seq_len):
        print("---")
        print("causal: 0")
        fail("causality check failed: logits of the first half changed when only the second half of the input did")
    val_loss, eval_tokens = evaluate(model, val, seq_len)
    eval_seconds = time.time() - t0
    if not math.isfinite(val_loss):
        fail(f"val_loss is {val_loss}")

    print("---")
    print(f"val_loss: {val_loss:.6f}")
    print(f"val_bpb: {val_loss / math.log(2):.6f}")  # byte tokenizer: tokens == bytes
    print(f"artifact_bytes: {code_bytes + model_bytes}")
    print(f"code_bytes: {code_bytes}")
    print(f"model_bytes: {model_bytes}")
    print(f"eval_seconds: {eval_seconds:.1f}")
    print(f"eval_tokens: {eval_tokens}")
    print("causal: 1")


if __name__ == "__main__":
    main()
