"""SFT stages 1-2 on a tiny Qwen3-VL: the loss mask, weights that change, images that reach the vision tower,
resuming from a checkpoint, LoRA merged on save. Data: a suite built from the session's SynthClin video."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("trl")
pytest.importorskip("datasets")
torch = pytest.importorskip("torch")

from safetensors.torch import load_file  # noqa: E402

from medscope.agent.backends.hf import HFBackend  # noqa: E402
from medscope.agent.backends.processors import fit_image, image_geometry  # noqa: E402
from medscope.agent.loop import AgentConfig  # noqa: E402
from medscope.agent.protocol import render_answer, render_tool_call  # noqa: E402
from medscope.config import add_config_arguments, config_from_args, flat_values, run_config_defaults  # noqa: E402
from medscope.suite.build import BuildConfig, build  # noqa: E402
from medscope.suite.qa import QAConfig  # noqa: E402
from medscope.suite.records import read_jsonl  # noqa: E402
from medscope.train import sft, tiny  # noqa: E402
from medscope.train.data import fill_images, sft_rows, to_row, trajectory_messages  # noqa: E402
from medscope.video.source import VideoSource  # noqa: E402
from medscope.video.synthclin import SynthClinVideo  # noqa: E402

MAX_PIXELS = 128 * 96  # at most 12 visual tokens per frame


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models train faster on one thread


@pytest.fixture(scope="module")
def suite(synth_video: SynthClinVideo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("suite")
    # one sample per task (a grounding question and the whole-video caption) keeps the training tests small
    build(BuildConfig(source="synthclin", annotations=str(synth_video.annotation_path), out=str(out), workers=1,
                      qa=QAConfig(max_per_task=1)))
    return out


@pytest.fixture(scope="module")
def stage2_rows(suite: Path) -> list[dict[str, Any]]:
    rows = sft_rows(read_jsonl(suite / "trajectories.jsonl", "trajectory"), AgentConfig(), stage=2)
    assert any(len([m for m in r["messages"] if m["role"] == "assistant"]) > 1 for r in rows), "need a VCoT row"
    return rows


@pytest.fixture(scope="module")
def texts(stage2_rows: list[dict[str, Any]]) -> list[str]:
    return [p["text"] for r in stage2_rows for m in r["messages"] for p in m["content"] if p["type"] == "text"]


def _processor(arch: tiny.Arch, texts: list[str]) -> Any:
    tokenizer = tiny.build_tokenizer(texts * 3, vocab_size=600, chat_template=tiny.load_chat_template(arch))
    return tiny.build_processor(arch, tokenizer, max_pixels=MAX_PIXELS)


def test_rows_built_beforehand_train_the_same_and_are_checked(suite: Path, base_model: Path, tmp_path: Path) -> None:
    """``save_rows`` (the tiny recipe builds rows while the curriculum trains) gives the rows ``main`` would build,
    and ``main`` refuses rows built from other settings, naming them."""
    sft.save_rows(_config(suite, base_model, tmp_path / "unused"), base_model, tmp_path / "rows")
    built = sft.main(_config(suite, base_model, tmp_path / "built"))
    saved = sft.main(_config(suite, base_model, tmp_path / "saved", rows=str(tmp_path / "rows")))
    before, after = _weights(built), _weights(saved)
    assert all(torch.equal(before[k], after[k]) for k in before)  # same rows, same seed: the same steps
    with pytest.raises(ValueError, match="built with other repair"):
        sft.main(_config(suite, base_model, tmp_path / "other", rows=str(tmp_path / "rows"), repair=0.5))
    with pytest.raises(ValueError, match="no rows saved there"):
        sft.main(_config(suite, base_model, tmp_path / "none", rows=str(tmp_path / "missing")))


@pytest.fixture(scope="module")
def base_model(texts: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    processor = _processor("qwen3_vl", texts)
    model = tiny.build_tiny_model("qwen3_vl", processor.tokenizer)  # hidden 64, 2 layers, vision 32 x 1
    return tiny.save_tiny(model, processor, tmp_path_factory.mktemp("base"))


def _config(suite: Path, model: Path, out: Path, **overrides: Any) -> sft.SFTStageConfig:
    stage = overrides.get("stage", 2)
    data = suite / ("samples.jsonl" if stage == 1 else "trajectories.jsonl")
    values: dict[str, Any] = {"data": str(data), "model": str(model), "out": str(out), "lr": 1e-3, "grad_accum": 1,
                              "max_steps": 2, "save_steps": 100, "gradient_checkpointing": False} | overrides
    return sft.SFTStageConfig(**values)


def _runs(mask: list[bool]) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    runs, start = [], None
    for i, on in enumerate([*mask, False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            runs.append((start, i))
            start = None
    return runs


@pytest.mark.parametrize("arch", ["qwen3_vl", "qwen2_5_vl"])
def test_loss_mask_is_the_assistant_turns(
    arch: tiny.Arch, base_model: Path, texts: list[str], stage2_rows: list[dict[str, Any]]
) -> None:
    processor = sft.load_processor(base_model) if arch == "qwen3_vl" else _processor(arch, texts)
    collator = sft.AgentSFTCollator(processor)
    # Qwen3-VL shows frames inside tool responses; Qwen2.5-VL's template cannot, so they come as user turns.
    assert collator.tool_messages_as_user == (arch == "qwen2_5_vl")
    rows = sorted(stage2_rows, key=lambda r: -len(r["images"]))[:2]  # a VCoT row first, padded batch
    batch = collator(rows)
    assert all(isinstance(value, torch.Tensor) for value in batch.values())  # what a model's forward takes
    assert batch["input_ids"].dtype == torch.long and batch["pixel_values"].dtype == torch.float32
    tokenizer = processor.tokenizer
    pad_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for i, row in enumerate(rows):
        labels = batch["labels"][i]
        ids = batch["input_ids"][i]
        assert torch.equal(labels[labels != -100], ids[labels != -100])
        turns = [m["content"][0]["text"] for m in row["messages"] if m["role"] == "assistant"]
        runs = _runs((labels != -100).tolist())
        decoded = [tokenizer.decode(ids[s:e], skip_special_tokens=False) for s, e in runs]
        # Each assistant turn, in order, with the end of turn the model must learn to emit (and the template's
        # newline after it); nothing else.
        assert decoded == [f"{text}<|im_end|>\n" for text in turns]
        trained = "".join(decoded)
        for foreign in ("<|image_pad|>", "<tool_response>", "<|im_start|>", "Question:", "Overview", "<tools>"):
            assert foreign not in trained
        assert not (labels[batch["attention_mask"][i] == 0] != -100).any()
    # Every frame reached pixel_values, each with its image tokens in the prompt.
    grid = batch["image_grid_thw"]
    assert grid.shape[0] == sum(len(r["images"]) for r in rows)
    tokens_per_frame = grid.prod(dim=-1) // 4
    assert int((batch["input_ids"] == pad_id).sum()) == int(tokens_per_frame.sum())
    assert int(tokens_per_frame.max()) <= 12
    prompt = tokenizer.decode(batch["input_ids"][0])
    assert "<|im_start|>tool" not in prompt
    if arch == "qwen3_vl":  # the system prompt carries the tool schemas as a GRPO rollout renders them
        assert "<tools>" in prompt


def test_a_slip_is_context_and_its_repair_is_trained(suite: Path, base_model: Path) -> None:
    trajectory = next(t for t in read_jsonl(suite / "trajectories.jsonl", "trajectory")
                      if t.sample.task == "grounding")
    closer = "One frame shows it. Look closer."
    turns = [render_tool_call("crop_video", {"start_time": 10.0, "end_time": 40.0}, "Look at the phase."),
             render_tool_call("crop_video", {"start_time": 20.0, "end_time": 25.0}, closer),
             render_answer("[21.0, 24.0]", "Some frames show it.")]
    trajectory = dataclasses.replace(trajectory, turns=[{"text": t, "observation": None} for t in turns])
    plain = sft_rows([trajectory], AgentConfig(), stage=2)[0]
    slipped = sft_rows([trajectory], AgentConfig(), stage=2, repair=1.0)[0]
    said = [m["content"][0]["text"] for m in slipped["messages"] if m["role"] == "assistant"]
    assert len(said) == 4 and [t for t in said if t in turns] == turns  # one slip, before one of the two crops
    with VideoSource(trajectory.sample.video) as source:
        slipped = to_row(trajectory_messages(trajectory, source, AgentConfig(), slip_at=2))
    said = [m["content"][0]["text"] for m in slipped["messages"] if m["role"] == "assistant"]
    slip = render_tool_call("crop_video", {"start_time": 20.0, "end_time": 20.0}, closer)
    assert said == [turns[0], slip, *turns[1:]]
    error = slipped["messages"][slipped["messages"].index(next(m for m in slipped["messages"]
                                                              if m["content"][0]["text"] == slip)) + 1]
    assert error["role"] == "tool" and "Tool error (crop_video)" in error["content"][0]["text"]
    assert error["content"][0]["text"].startswith("Question: ")  # restated, as after every view
    assert len(slipped["images"]) == len(plain["images"])  # the error shows no frame
    # Through Arrow, as the trainer sees rows: the slip is in the prompt, but only the teacher's turns are learnt.
    rows = list(sft.frames_dataset([plain, slipped]))
    processor = sft.load_processor(base_model)
    batch = sft.AgentSFTCollator(processor)(rows)
    tokenizer = processor.tokenizer
    for i in range(2):
        ids, labels = batch["input_ids"][i], batch["labels"][i]
        trained = [tokenizer.decode(ids[s:e]) for s, e in _runs((labels != -100).tolist())]
        assert trained == [f"{text}<|im_end|>\n" for text in turns]
    assert '"end_time": 20.0' in tokenizer.decode(batch["input_ids"][1])
    assert '"end_time": 20.0' not in tokenizer.decode(batch["input_ids"][0])


def test_rows_survive_arrow(stage2_rows: list[dict[str, Any]]) -> None:
    row = sft.frames_dataset(stage2_rows[:1])[0]
    assert len(row["images"]) == len(stage2_rows[0]["images"])
    for read, written in zip(row["images"], stage2_rows[0]["images"], strict=True):  # PNG: lossless
        assert read.mode == written.mode and np.array_equal(np.asarray(read), np.asarray(written))
    fill_images(row["messages"], row["images"])  # the placeholders still match the frames


@pytest.mark.parametrize("arch", ["qwen3_vl", "qwen2_5_vl"])
def test_rows_keep_frames_at_the_models_size(arch: tiny.Arch, suite: Path, stage2_rows: list[dict[str, Any]],
                                              texts: list[str]) -> None:
    processor = _processor(arch, texts)
    geometry = image_geometry(processor)
    assert geometry is not None and geometry[2] == MAX_PIXELS
    rows = sft_rows(read_jsonl(suite / "trajectories.jsonl", "trajectory"), AgentConfig(), stage=2,
                    fit=partial(fit_image, geometry=geometry))
    big, small = stage2_rows[-1]["images"], rows[-1]["images"]
    assert len(big) == len(small) > 8 and all(a.size != b.size for a, b in zip(big, small, strict=True))
    assert all(b.width * b.height <= MAX_PIXELS for b in small)  # at most a quarter of the tool's frames
    # The processor turns the fitted frames into the pixels it makes of the tool's own frames.
    made = [processor.image_processor(images=frames, return_tensors="pt") for frames in (big, small)]
    assert torch.equal(made[0]["image_grid_thw"], made[1]["image_grid_thw"])
    assert torch.allclose(made[0]["pixel_values"], made[1]["pixel_values"], atol=1e-6)


def _weights(folder: Path) -> dict[str, Any]:
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("stage", [1, 2])
def test_training_changes_the_weights(stage: int, suite: Path, base_model: Path, tmp_path: Path) -> None:
    # Stage 2 runs with gradient checkpointing on, as a 7B run does.
    out = sft.main(_config(suite, base_model, tmp_path / "run", stage=stage, gradient_checkpointing=stage == 2))
    before, after = _weights(base_model), _weights(out)
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any("language_model" in k for k in changed)
    assert any(k.startswith("model.visual.") for k in changed)  # the loss reached the frames through the tower
    backend = HFBackend.from_pretrained(out)
    prompt = fill_images(*sft_rows_first_turns(suite))
    text = backend.generate(prompt, stop=["</tool_call>", "</answer>"], max_new_tokens=4)
    assert isinstance(text, str)
    assert backend.last_prompt_stats["grid_rows"] == backend.last_prompt_stats["images"] > 0


def sft_rows_first_turns(suite: Path) -> tuple[list[dict[str, Any]], list[Any]]:
    """The system and first user turn of the first trajectory, as placeholders and frames."""
    trajectory = next(iter(read_jsonl(suite / "trajectories.jsonl", "trajectory")))
    row = sft_rows([trajectory], AgentConfig(), stage=2)[0]
    messages = row["messages"][:2]
    count = sum(p["type"] == "image" for m in messages for p in m["content"])
    return messages, row["images"][:count]


def test_resumes_from_the_last_complete_checkpoint(
    suite: Path, base_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "run"
    sft.main(_config(suite, base_model, out, stage=1, save_steps=1, max_steps=2))
    state_path = out / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_path.read_text())
    assert state["global_step"] == 2
    # Mark the checkpoint: a resumed run carries its history on, a fresh one would not.
    state["log_history"].insert(0, {"step": 0, "medscope_marker": True})
    state_path.write_text(json.dumps(state))
    (out / "checkpoint-9").mkdir()  # a save killed half-way: no trainer_state.json, must be ignored
    assert sft.last_checkpoint(out) == out / "checkpoint-2"

    with caplog.at_level(logging.INFO, logger="medscope.train.sft"):
        sft.main(_config(suite, base_model, out, stage=1, save_steps=1, max_steps=3))
    assert "checkpoint-2" in caplog.text
    resumed = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert resumed["global_step"] == 3
    assert resumed["log_history"][0].get("medscope_marker") is True
    assert [e["step"] for e in resumed["log_history"] if "loss" in e] == [1, 2, 3]
    assert (out / "config.json").is_file() and not (out / ".final.tmp").exists()


def test_lora_trains_and_merges(suite: Path, base_model: Path, tmp_path: Path) -> None:
    # Two updates: the first has learning rate 0 (warm-up), and LoRA's B starts at zero. The curves go to
    # TensorBoard (offline) and the run's flags to run_config.yaml.
    config = _config(suite, base_model, tmp_path / "run", stage=1, lora=True, lora_r=4, lora_alpha=8, lr=1e-2,
                     report_to="tensorboard")
    out = sft.main(config)
    assert list((out / "runs").rglob("events.out.tfevents.*"))
    assert run_config_defaults(out / "run_config.yaml", sft.SFTStageConfig) == flat_values(config)
    adapter = load_file(str(out / "checkpoint-2" / "adapter_model.safetensors"))
    assert adapter and all("language_model" in k for k in adapter)
    before, after = _weights(base_model), _weights(out)
    assert before.keys() == after.keys()  # merged: no lora_A/lora_B left in the saved model
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("language_model" in k and "proj" in k for k in changed)  # the vision tower is untouched


def test_config_is_a_cli() -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, sft.SFTStageConfig)
    args = parser.parse_args(["--stage", "1", "--data", "s.jsonl", "--model", "m", "--out", "o", "--lora",
                              "--overview-frames", "8"])
    config = config_from_args(sft.SFTStageConfig, args)
    assert (config.stage, config.lora, config.agent.tools.overview_frames, config.lr) == (1, True, 8, 1e-5)
    with pytest.raises(ValueError, match="stage must be 1"):
        sft.SFTStageConfig(stage=3)

