"""The hf backend on real hardware choices: device and dtype resolution, thread default, Hub ids from the cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
import torch

from medscope.agent.backends import BackendOptions, make_backend
from medscope.agent.backends.base import BackendError
from medscope.agent.backends.hf import HFBackend, cpu_threads, resolve_device, resolve_dtype
from medscope.models import builtin_model_path
from medscope.video.synthclin import SynthClinVideo


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub ids are looked up in the local cache only: nothing here may download (nor can it, in CI)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_device_and_dtype_resolution() -> None:
    if not torch.cuda.is_available():
        assert resolve_device("auto") in ("cpu", "mps")
        with pytest.raises(BackendError, match=r"--device cuda: torch sees no CUDA GPU.*--device cpu"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="--device 'tpu'"):
        resolve_device("tpu")
    assert resolve_dtype("auto", "cpu") == torch.float32 and resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="--dtype 'half'"):
        resolve_dtype("half", "cpu")


def test_small_models_get_one_thread_on_the_cpu() -> None:
    assert cpu_threads(0, 1_200_000) == 1  # medscope-tiny
    assert cpu_threads(3, 1_200_000) == 3  # --threads wins
    assert cpu_threads(0, 7_000_000_000) == torch.get_num_threads()  # a 7B keeps torch's default
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        backend = make_backend("hf", options=BackendOptions(device="cpu", dtype="float32"))
        assert torch.get_num_threads() == 1 and backend.model.dtype == torch.float32
        make_backend("hf", options=BackendOptions(device="cpu", threads=2))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def _cache_with(tmp_path: Path, repo: str) -> Path:
    """A Hugging Face cache holding ``repo`` (the built-in model's files), laid out as huggingface_hub writes it."""
    cache = tmp_path / "hub"
    entry = cache / f"models--{repo.replace('/', '--')}"
    revision = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(builtin_model_path(), entry / "snapshots" / revision)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text(revision)
    return cache


def test_a_hub_id_runs_from_the_local_cache_offline(synth_video: SynthClinVideo, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_CACHE": str(_cache_with(tmp_path, "medscope/tiny-cached")), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "medscope.cli", "ask", str(synth_video.video_path), "When does bleeding happen?",
               "--backend", "hf", "--device", "cpu", "--dtype", "float32", "--threads", "1", "--max-turns", "2"]
    done = subprocess.run([*command, "--model", "medscope/tiny-cached"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "answer:" in done.stdout
    missing = subprocess.run([*command, "--model", "medscope/not-cached"], capture_output=True, text=True, env=env,
                             timeout=300)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "'medscope/not-cached'" in missing.stderr and "HF_HUB_OFFLINE=1" in missing.stderr
    assert "hf download medscope/not-cached" in missing.stderr


def test_a_missing_local_folder_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # "runs/grpo" is also a Hub id: only the local cache may be read
    (tmp_path / "runs").mkdir()
    with pytest.raises(BackendError, match=r"'runs/grpo': it is not a local folder \(there is no folder runs/grpo"):
        HFBackend.from_pretrained("runs/grpo", device="cpu")
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        HFBackend.from_pretrained(tmp_path / "runs" / "a" / "b", device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.py covers the rest)")
def test_the_built_in_model_runs_on_cuda_in_bf16(synth_video: SynthClinVideo) -> None:
    from medscope.agent.loop import AgentConfig, run_episode

    backend = make_backend("hf", options=BackendOptions(device="auto", dtype="auto"))
    assert backend.model.device.type == "cuda" and backend.model.dtype == torch.bfloat16
    episode = run_episode(backend, str(synth_video.video_path), "When does bleeding happen?",
                          AgentConfig(max_new_tokens=64))
    assert episode.turns


def test_the_gpu_check_script_runs_its_steps_on_the_cpu(tmp_path: Path) -> None:
    """The script a GPU machine runs, exercised here on the CPU at toy size: episode, SFT step, GA-GRPO step."""
    script = Path(__file__).parent.parent / "benchmarks" / "gpu_check.py"
    done = subprocess.run([sys.executable, str(script), "--device", "cpu", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    rows = json.loads((tmp_path / "gpu_check.json").read_text())["rows"]
    assert [r["step"] for r in rows] == ["load (hf backend)", "episode", "8 episodes, one at a time",
                                         "8 episodes, turns batched (--workers 8)", "SFT step (stage 2)",
                                         "GA-GRPO step"]
    assert all(r["seconds"] > 0 for r in rows) and "loss" in rows[4]["detail"]
    assert "8 of 8 episodes the same" in rows[3]["detail"]  # float32 on the CPU: batched turns are the turns alone


def test_the_gpu_checks_7b_model_is_qwen2_5_vl_7b() -> None:
    """--size 7b builds the paper's model at its published size (on the meta device here: shapes, no memory)."""
    import importlib.util

    from medscope.agent.backends.processors import load_processor
    from medscope.models import builtin_model_path

    spec = importlib.util.spec_from_file_location("gpu_check", Path(__file__).parent.parent / "benchmarks" /
                                                  "gpu_check.py")
    assert spec is not None and spec.loader is not None
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    tokenizer = load_processor(builtin_model_path()).tokenizer
    with torch.device("meta"):
        model = gpu_check.qwen25_vl_7b(tokenizer)
    parameters = sum(p.numel() for p in model.parameters())
    hidden, vocab = 3584, 152064  # Qwen2.5-VL-7B: untied input and output embeddings over 152,064 tokens
    assert parameters - len(tokenizer) * hidden + 2 * vocab * hidden == 8_292_166_656  # its config's "8.29B"
    text = model.config.text_config
    assert (text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (28, 28, 4)


def test_eval_runs_the_built_in_model_with_explicit_device_dtype_and_threads(synth_video: SynthClinVideo,
                                                                             tmp_path: Path) -> None:
    from medscope.eval.runner import EvalConfig, evaluate
    from medscope.suite.records import Sample, write_jsonl

    event = synth_video.annotation["events"][0]
    window = [event["start"], event["end"]]
    write_jsonl(tmp_path / "s.jsonl", [Sample(
        id="e/1", video=str(synth_video.video_path), duration=120.0, question="When does bleeding happen?",
        answer=f"[{window[0]:.2f}, {window[1]:.2f}]", task="grounding", evidence=[window], source="synthclin")])
    options = BackendOptions(device="cpu", dtype="float32", threads=1)
    runs = evaluate(EvalConfig(samples=str(tmp_path / "s.jsonl"), out=str(tmp_path / "eval"), backend="hf",
                               baseline="none", options=options))
    [result] = runs["agent"]
    assert result["episode"]["backend"]["backend"] == "hf" and result["episode"]["turns"]
    manifest = (tmp_path / "eval" / "manifest.json").read_text()
    assert '"device": "cpu"' in manifest and '"dtype": "float32"' in manifest
