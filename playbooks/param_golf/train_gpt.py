"""
CPU-scale Parameter Golf: train the smallest-artifact, best-compressing GPT you can.
A faithful small version of the openai/parameter-golf baseline. This is the file you edit.

Run: python prepare.py --split train && python train_gpt.py
The independent scorer (score.py) imports this file and calls load_artifact(); keep it importable
without side effects. Training reads only the TRAIN split; never read validation data.
"""

import io
import math
import os
import random
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------
# Hyperparameters (each overridable by an environment variable of the same name)
# ---------------------------------------------------------------------------

MODEL_DIM = int(os.environ.get("MODEL_DIM", 184))                # residual stream width
NUM_LAYERS = int(os.environ.get("NUM_LAYERS", 4))                # transformer blocks (U-Net: first half stores skips)
NUM_HEADS = int(os.environ.get("NUM_HEADS", 4))                  # query heads
NUM_KV_HEADS = int(os.environ.get("NUM_KV_HEADS", 2))            # key/value heads (grouped-query attention)
MLP_MULT = int(os.environ.get("MLP_MULT", 2))                    # MLP hidden width = MLP_MULT * MODEL_DIM
MATRIX_LR = float(os.environ.get("MATRIX_LR", 0.04))             # Muon learning rate for 2-D block matrices
EMBED_LR = float(os.environ.get("EMBED_LR", 0.05))               # Adam learning rate for the tied embedding
SCALAR_LR = float(os.environ.get("SCALAR_LR", 0.04))             # Adam learning rate for gains, scales, skip weights
WARMDOWN_FRAC = float(os.environ.get("WARMDOWN_FRAC", 0.3))      # final fraction of progress with linear LR decay to 0
BATCH_SIZE = int(os.environ.get("BATCH_SIZE", 16))               # sequences per optimizer step
SEQ_LEN = int(os.environ.get("SEQ_LEN", 256))                    # tokens (bytes) per training sequence
QUANT_CLIP_PERCENTILE = float(os.environ.get("QUANT_CLIP_PERCENTILE", 99.99))  # per-row clip before int8 rounding
LOGIT_SOFTCAP = float(os.environ.get("LOGIT_SOFTCAP", 30.0))     # logits = cap * tanh(logits / cap)
ITERATIONS = int(os.environ.get("ITERATIONS", 125))              # optimizer steps (upper bound)
MAX_WALLCLOCK_SECONDS = float(os.environ.get("MAX_WALLCLOCK_SECONDS", 90.0))  # training time cap; 0 disables
SEED = int(os.environ.get("SEED", 1))                            # seeds python, numpy and torch RNGs

# Fixed by the task (the byte tokenizer and the artifact format); not knobs.
VOCAB_SIZE = 256                                  # byte-level tokenizer from prepare.py
QK_GAIN_INIT = 1.5                                # initial learned gain on normed queries
TIED_EMBED_INIT_STD = 0.005                       # init std of the tied embedding
MUON_MOMENTUM = 0.95                              # Nesterov momentum of Muon (warmed up from MUON_MOMENTUM_START)
MUON_MOMENTUM_START = 0.85
MUON_MOMENTUM_WARMUP_STEPS = 100
MUON_NS_STEPS = 5                                 # Newton-Schulz iterations
ADAM_BETAS = (0.9, 0.95)
QUANT_MIN_NUMEL = 4096                            # 2-D tensors at least this big are int8; others fp16
ARTIFACT = "final_model.int8.ptz"                 # written to the current directory
DEVICE = os.environ.get("DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")  # Hive's lease picks the GPU
AUTOCAST_BF16 = DEVICE.startswith("cuda") and torch.cuda.is_bf16_supported()  # bf16 matmuls on GPU; CPU stays fp32
HPARAM_NAMES = ("MODEL_DIM", "NUM_LAYERS", "NUM_HEADS", "NUM_KV_HEADS", "MLP_MULT", "LOGIT_SOFTCAP", "SEQ_LEN", "VOCAB_SIZE")

# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def forward(self, x):
        return F.rms_norm(x, (x.size(-1),))


class Rotary(nn.Module):
    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim), persistent=False)

    def forward(self, seq_len: int):
        freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32, device=self.inv_freq.device), self.inv_freq)
        return freqs.cos()[None, None], freqs.sin()[None, None]


def apply_rotary(x, cos, sin):
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_kv_heads: int):
        super().__init__()
        assert dim % num_heads == 0 and num_heads % num_kv_heads == 0
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, dim // num_heads
        self.c_q = nn.Linear(dim, dim, bias=False)
        self.c_k = nn.Linear(dim, num_kv_heads * self.head_dim, bias=False)
        self.c_v = nn.Linear(dim, num_kv_heads * self.head_dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.proj._zero_init = True
        self.q_gain = nn.Parameter(torch.full((num_heads,), QK_GAIN_INIT))
        self.rotary = Rotary(self.head_dim)

    def forward(self, x):
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.c_k(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.c_v(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = F.rms_norm(q, (self.head_dim,)), F.rms_norm(k, (self.head_dim,))  # QK-norm
        cos, sin = self.rotary(T)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        q = q * self.q_gain[None, :, None, None]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.num_kv_heads != self.num_heads)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, dim: int, mult: int):
        super().__init__()
        self.fc = nn.Linear(dim, mult * dim, bias=False)
        self.proj = nn.Linear(mult * dim, dim, bias=False)
        self.proj._zero_init = True

    def forward(self, x):
        return self.proj(F.relu(self.fc(x)).square())  # relu^2


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, mlp_mult: int):
        super().__init__()
        self.attn_norm, self.mlp_norm = RMSNorm(), RMSNorm()
        self.attn = CausalSelfAttention(dim, num_heads, num_kv_heads)
        self.mlp = MLP(dim, mlp_mult)
        self.attn_scale = nn.Parameter(torch.ones(dim))
        self.mlp_scale = nn.Parameter(torch.ones(dim))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))))  # mixes x with the embedding x0

    def forward(self, x, x0):
        x = self.resid_mix[0] * x + self.resid_mix[1] * x0
        x = x + self.attn_scale * self.attn(self.attn_norm(x))
        return x + self.mlp_scale * self.mlp(self.mlp_norm(x))


class GPT(nn.Module):
    def __init__(self, h: dict):
        super().__init__()
        dim, layers = h["MODEL_DIM"], h["NUM_LAYERS"]
        self.logit_softcap = h["LOGIT_SOFTCAP"]
        self.seq_len = h["SEQ_LEN"]  # the scorer evaluates in windows of this length
        self.tok_emb = nn.Embedding(h["VOCAB_SIZE"], dim)
        self.num_encoder_layers = layers // 2
        self.num_decoder_layers = layers - self.num_encoder_layers
        self.skip_weights = nn.Parameter(torch.ones(min(self.num_encoder_layers, self.num_decoder_layers), dim))
        self.blocks = nn.ModuleList(Block(dim, h["NUM_HEADS"], h["NUM_KV_HEADS"], h["MLP_MULT"]) for _ in range(layers))
        self.final_norm = RMSNorm()
        nn.init.normal_(self.tok_emb.weight, std=TIED_EMBED_INIT_STD)
        for m in self.modules():
            if isinstance(m, nn.Linear) and getattr(m, "_zero_init", False):
                nn.init.zeros_(m.weight)

    def forward(self, idx):
        """Return logits (B, T, VOCAB_SIZE) for token ids idx (B, T); position t sees only idx[:, :t+1]."""
        x = F.rms_norm(self.tok_emb(idx), (self.tok_emb.embedding_dim,))
        x0, skips = x, []
        for i in range(self.num_encoder_layers):
            x = self.blocks[i](x, x0)
            skips.append(x)
        for i in range(self.num_decoder_layers):
            if skips:  # U-Net: add back the mirrored encoder activation with a learned weight
                x = x + self.skip_weights[i] * skips.pop()
            x = self.blocks[self.num_encoder_layers + i](x, x0)
        logits = F.linear(self.final_norm(x), self.tok_emb.weight)  # tied embeddings
        return self.logit_softcap * torch.tanh(logits / self.logit_softcap)


def build_model(hparams: dict) -> nn.Module:
    """Build an untrained GPT from a dict holding the HPARAM_NAMES keys."""
    return GPT(hparams)


# ---------------------------------------------------------------------------
# Artifact: per-row int8 matrices + fp16 small tensors, torch.save, zlib -9
# ---------------------------------------------------------------------------


def quantize(state_dict: dict, hparams: dict) -> dict:
    """Return a compact object holding int8 matrices with fp16 per-row scales, fp16 small tensors and hparams."""
    obj = {"hparams": dict(hparams), "int8": {}, "scale": {}, "fp16": {}}
    for name, t in state_dict.items():
        t = t.detach().float().cpu()  # the artifact loads anywhere, the scorer's CPU included
        if t.ndim == 2 and t.numel() >= QUANT_MIN_NUMEL:
            clip = torch.quantile(t.abs(), QUANT_CLIP_PERCENTILE / 100.0, dim=1).clamp_min(1e-8)
            scale = (clip / 127.0).to(torch.float16)
            q = torch.clamp(torch.round(t.clamp(-clip[:, None], clip[:, None]) / scale.float()[:, None]), -127, 127)
            obj["int8"][name], obj["scale"][name] = q.to(torch.int8).contiguous(), scale
        else:
            obj["fp16"][name] = t.to(torch.float16)
    return obj


def dequantize(obj: dict) -> dict:
    """Return a float32 state_dict from a quantize() object."""
    sd = {name: t.float() for name, t in obj["fp16"].items()}
    for name, q in obj["int8"].items():
        sd[name] = q.float() * obj["scale"][name].float()[:, None]
    return sd


def save_artifact(model: nn.Module, hparams: dict, path: str = ARTIFACT) -> int:
    """Write the compressed artifact and return its size in bytes."""
    buf = io.BytesIO()
    torch.save(quantize(model.state_dict(), hparams), buf)
    blob = zlib.compress(buf.getvalue(), level=9)
    Path(path).write_bytes(blob)
    return len(blob)


def load_artifact(path) -> nn.Module:
    """Rebuild the model from an artifact written by save_artifact (the scorer's entry point)."""
    obj = torch.load(io.BytesIO(zlib.decompress(Path(path).read_bytes())), weights_only=True)
    model = build_model(obj["hparams"])
    model.load_state_dict(dequantize(obj))
    return model.eval()


# ---------------------------------------------------------------------------
# Optimizer: Muon for 2-D block matrices, Adam for embedding and scalars
# ---------------------------------------------------------------------------


def zeropower_via_newtonschulz5(G, steps: int = MUON_NS_STEPS, eps: float = 1e-7):
    """Approximately orthogonalise G (the baseline's quintic Newton-Schulz iteration)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G / (G.norm() + eps)
    transposed = G.size(0) > G.size(1)
    if transposed:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if transposed else X


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float = MUON_MOMENTUM):
        super().__init__(params, dict(lr=lr, momentum=momentum))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buf.mul_(group["momentum"]).add_(p.grad)
                g = p.grad.add(buf, alpha=group["momentum"])  # Nesterov
                g = zeropower_via_newtonschulz5(g)
                p.add_(g, alpha=-group["lr"] * max(1.0, p.size(0) / p.size(1)) ** 0.5)


def lr_multiplier(step: int, elapsed: float) -> float:
    """Linear warmdown over the last WARMDOWN_FRAC of progress, progress counting steps or wall clock."""
    progress = step / ITERATIONS
    if MAX_WALLCLOCK_SECONDS > 0:
        progress = max(progress, elapsed / MAX_WALLCLOCK_SECONDS)
    if WARMDOWN_FRAC <= 0 or progress < 1.0 - WARMDOWN_FRAC:
        return 1.0
    return max(0.0, (1.0 - progress) / WARMDOWN_FRAC)


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def train_tokens() -> np.ndarray:
    """Load the TRAIN shard, building it with prepare.py if missing (never touches val)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import prepare

    return prepare.load_tokens(prepare.build("train")).astype(np.int64)


def get_batch(tokens: np.ndarray, rng: np.random.Generator):
    starts = rng.integers(0, len(tokens) - SEQ_LEN - 1, size=BATCH_SIZE)
    window = np.stack([tokens[s : s + SEQ_LEN + 1] for s in starts])
    window = torch.from_numpy(window)
    return window[:, :-1], window[:, 1:]


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 1)))
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    hparams = {name: globals()[name] for name in HPARAM_NAMES}

    tokens = train_tokens()
    model = build_model(hparams).to(DEVICE)  # built on the CPU first: the same initial weights on every device
    params = sum(p.numel() for p in model.parameters())
    matrices = [p for name, p in model.blocks.named_parameters() if p.ndim == 2 and "resid_mix" not in name]
    scalars = [p for name, p in model.named_parameters() if p.ndim < 2 or "resid_mix" in name or name == "skip_weights"]
    muon = Muon(matrices, lr=MATRIX_LR)
    adam = torch.optim.Adam(
        [dict(params=[model.tok_emb.weight], lr=EMBED_LR), dict(params=scalars, lr=SCALAR_LR)],
        betas=ADAM_BETAS, eps=1e-8,
    )
    optimizers = [muon, adam]
    for opt in optimizers:
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
    print(f"params: {params:,}  train tokens: {len(tokens):,}  tokens/step: {BATCH_SIZE * SEQ_LEN:,}")

    t0, step, loss_ema = time.time(), 0, None
    while step < ITERATIONS:
        elapsed = time.time() - t0
        if MAX_WALLCLOCK_SECONDS > 0 and elapsed >= MAX_WALLCLOCK_SECONDS:
            break
        mult = lr_multiplier(step, elapsed)
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * mult
        frac = min(step / MUON_MOMENTUM_WARMUP_STEPS, 1.0)
        for group in muon.param_groups:
            group["momentum"] = (1 - frac) * MUON_MOMENTUM_START + frac * MUON_MOMENTUM

        x, y = (t.to(DEVICE) for t in get_batch(tokens, rng))
        with torch.autocast(torch.device(DEVICE).type, dtype=torch.bfloat16, enabled=AUTOCAST_BF16):
            logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB_SIZE).float(), y.reshape(-1))
        if not math.isfinite(loss.item()):
            print(f"step {step}: loss is {loss.item()}, aborting")
            sys.exit(1)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()
        step += 1
        loss_ema = loss.item() if loss_ema is None else 0.9 * loss_ema + 0.1 * loss.item()
        if step % 25 == 0 or step == 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  lr_mult {mult:.3f}  {time.time() - t0:.1f}s", flush=True)
    train_seconds = time.time() - t0

    model_bytes = save_artifact(model, hparams)
    code_bytes = len(Path(__file__).read_text(encoding="utf-8").encode("utf-8"))
    print("---")
    print(f"train_loss: {loss_ema:.4f}")
    print(f"artifact_bytes: {code_bytes + model_bytes}")
    print(f"code_bytes: {code_bytes}")
    print(f"model_bytes: {model_bytes}")
    print(f"train_seconds: {train_seconds:.1f}")
    print(f"steps: {step}")
    print(f"params: {params}")
    print(f"device: {DEVICE}")
    if DEVICE.startswith("cuda"):  # what this run took of its GPU, for packing several runs on one
        print(f"peak_gpu_memory_mb: {torch.cuda.max_memory_allocated() / 2**20:.1f}")
        print(f"peak_gpu_reserved_mb: {torch.cuda.max_memory_reserved() / 2**20:.1f}")
