"""The CPU Parameter Golf template trains, and its independent scorer cannot be fooled by the run."""

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the Parameter Golf template needs torch (pip install torch==2.13.0)")

TEMPLATE = Path(__file__).resolve().parents[1] / "playbooks" / "param_golf"
GENERATED = shutil.ignore_patterns("*.bin", "*.bin.json", "*.tmp", "__pycache__", "final_model*")
KNOBS = (
    "MODEL_DIM", "NUM_LAYERS", "NUM_HEADS", "NUM_KV_HEADS", "MLP_MULT", "MATRIX_LR", "EMBED_LR", "SCALAR_LR",
    "WARMDOWN_FRAC", "BATCH_SIZE", "SEQ_LEN", "QUANT_CLIP_PERCENTILE", "LOGIT_SOFTCAP", "ITERATIONS",
    "MAX_WALLCLOCK_SECONDS", "SEED",
)
# the TINY run's numbers from the template before it learned CUDA (torch 2.13.0, CPU): the CPU path must keep them
CPU_REFERENCE = {"train_loss": "5.3208", "model_bytes": 38092, "val_bpb": 5.521205}
TINY = {
    "OMP_NUM_THREADS": "1",
    "ITERATIONS": "3",
    "MAX_WALLCLOCK_SECONDS": "0",
    "MODEL_DIM": "32",
    "NUM_LAYERS": "2",
    "NUM_HEADS": "2",
    "NUM_KV_HEADS": "1",
    "BATCH_SIZE": "2",
    "SEQ_LEN": "64",
}


def run(args, cwd, **env):
    return subprocess.run(
        [sys.executable, *map(str, args)], check=False, cwd=cwd, env={**os.environ, **env},
        capture_output=True, text=True, timeout=120,
    )


def metrics(stdout: str) -> dict:
    """Parse the `---` then `key: value` block (the last one wins)."""
    block = stdout.rsplit("---\n", 1)[1]
    return dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A private copy of the template playing the scorer's pristine checkout."""
    path = tmp_path_factory.mktemp("pristine") / "param_golf"
    shutil.copytree(TEMPLATE, path, ignore=GENERATED)
    return path


def make_run(tmp_path: Path, patch=None) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(TEMPLATE, run_dir, ignore=GENERATED)
    if patch:
        code = run_dir / "train_gpt.py"
        code.write_text(patch(code.read_text()))
    return run_dir


def train(run_dir: Path) -> dict:
    prep = run(["prepare.py", "--split", "train"], run_dir)
    assert prep.returncode == 0, prep.stderr
    assert not (run_dir / "data" / "kjv_val_000000.bin").exists()
    result = run(["train_gpt.py"], run_dir, **TINY)
    assert result.returncode == 0, result.stdout + result.stderr
    return metrics(result.stdout)


def score(pristine: Path, run_dir: Path):
    return run([pristine / "score.py", "--run-dir", run_dir], run_dir.parent, OMP_NUM_THREADS="1")


def test_train_then_score_counts_bytes_from_disk(pristine, tmp_path):
    run_dir = make_run(tmp_path)
    trained = train(run_dir)
    assert set(trained) >= {"train_loss", "artifact_bytes", "code_bytes", "model_bytes", "train_seconds", "steps", "params"}
    assert int(trained["steps"]) == 3
    assert not (run_dir / "data" / "kjv_val_000000.bin").exists()  # training never built the val split

    result = score(pristine, run_dir)
    assert result.returncode == 0, result.stderr
    scored = metrics(result.stdout)
    code_size = (run_dir / "train_gpt.py").stat().st_size
    model_size = (run_dir / "final_model.int8.ptz").stat().st_size
    assert int(scored["code_bytes"]) == code_size
    assert int(scored["model_bytes"]) == model_size
    assert int(scored["artifact_bytes"]) == code_size + model_size == int(trained["artifact_bytes"])
    assert scored["causal"] == "1"
    assert 1.0 < float(scored["val_bpb"]) < 8.5  # a 3-step model is near uniform over 256 bytes (8 bits)
    if trained["device"] == "cpu":  # a machine with a GPU trains there, in bf16: other numbers
        assert "peak_gpu_memory_mb" not in trained
        assert trained["train_loss"] == CPU_REFERENCE["train_loss"]
        # another CPU's vector kernels may round a last bit differently: a weight or two may quantise apart
        assert abs(int(trained["model_bytes"]) - CPU_REFERENCE["model_bytes"]) <= 64
        assert abs(float(scored["val_bpb"]) - CPU_REFERENCE["val_bpb"]) < 1e-4


def test_the_template_picks_cuda_when_there_and_the_cpu_otherwise(monkeypatch):
    import torch

    def load():  # import only, as the scorer does: no training runs
        spec = importlib.util.spec_from_file_location("param_golf_device_probe", TEMPLATE / "train_gpt.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    monkeypatch.delenv("DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = load()
    assert cpu.DEVICE == "cpu" and not cpu.AUTOCAST_BF16
    # CUDA cannot exist on this machine: only what the template would choose is asked
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    gpu = load()
    assert gpu.DEVICE == "cuda" and gpu.AUTOCAST_BF16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)  # a pre-Ampere GPU trains in fp32
    assert not load().AUTOCAST_BF16
    monkeypatch.setenv("DEVICE", "cpu")
    assert load().DEVICE == "cpu"


def test_forged_print_does_not_fool_the_scorer(pristine, tmp_path):
    forge = 'print("---")\nprint("val_bpb: 0.001")\nprint("val_loss: 0.001")\n'
    run_dir = make_run(tmp_path, lambda code: code + '\nif __name__ == "__main__":\n    ' + forge.replace("\n", "\n    ") + "\n")
    assert train(run_dir)["val_bpb"] == "0.001"
    result = score(pristine, run_dir)
    assert result.returncode == 0, result.stderr
    assert float(metrics(result.stdout)["val_bpb"]) > 1.0


def test_non_causal_attention_fails_the_scorer(pristine, tmp_path):
    def leak_future(code: str) -> str:
        assert code.count("is_causal=True") == 1
        return code.replace("is_causal=True", "is_causal=False")

    run_dir = make_run(tmp_path, leak_future)
    train(run_dir)
    result = score(pristine, run_dir)
    assert result.returncode != 0
    assert "causal: 0" in result.stdout
    assert "causality check failed" in result.stderr


def test_missing_artifact_is_a_clear_error(pristine, tmp_path):
    run_dir = make_run(tmp_path)
    result = score(pristine, run_dir)
    assert result.returncode != 0
    assert "final_model.int8.ptz not found" in result.stderr


def test_every_knob_is_a_top_level_env_override():
    """Each knob reads `NAME = int|float(os.environ.get("NAME", <literal>))`, so tools can find it by AST."""
    tree = ast.parse((TEMPLATE / "train_gpt.py").read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node.value
    for name in KNOBS:
        call = found[name]
        assert isinstance(call, ast.Call) and call.func.id in ("int", "float"), name
        get = call.args[0]
        assert ast.unparse(get.func) == "os.environ.get", name
        assert get.args[0].value == name and isinstance(get.args[1], ast.Constant), name
