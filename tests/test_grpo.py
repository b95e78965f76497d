"""GA-GRPO on TRL: completions back to protocol turns, the advantage seam against ``rewards.ga_advantages``, the
ablation flags, and a real run of a few steps whose rollouts call the video tools of a SynthClin video."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from transformers import AutoModelForImageTextToText  # noqa: E402

from medscope.agent.backends.processors import load_processor  # noqa: E402
from medscope.agent.loop import AgentConfig  # noqa: E402
from medscope.agent.protocol import FinalAnswer, ToolCall, parse_turn, render_answer, render_tool_call  # noqa: E402
from medscope.suite.build import BuildConfig, build  # noqa: E402
from medscope.suite.qa import QAConfig  # noqa: E402
from medscope.suite.records import Trajectory, read_jsonl  # noqa: E402
from medscope.train import grpo, sft, tiny  # noqa: E402
from medscope.train.data import sft_rows, system_message  # noqa: E402
from medscope.train.rewards import ga_advantages  # noqa: E402
from medscope.video.source import VideoSource  # noqa: E402
from medscope.video.synthclin import SynthClinVideo  # noqa: E402
from medscope.video.tools import TOOL_SPECS, ToolConfig  # noqa: E402

PIXELS = 128 * 96
TOOLS = ToolConfig(overview_frames=4, crop_frames=2, get_frame_count=1, overview_max_pixels=PIXELS,
                   crop_max_pixels=PIXELS, get_frame_max_pixels=PIXELS)
AGENT = AgentConfig(tools=TOOLS)


@pytest.fixture(scope="module")
def suite(synth_video: SynthClinVideo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("suite")
    # one sample per task (a grounding question and the whole-video caption) keeps the training tests small
    build(BuildConfig(source="synthclin", annotations=str(synth_video.annotation_path), out=str(out), workers=1,
                      qa=QAConfig(max_per_task=1)))
    return out


def _trajectories(suite: Path) -> list[Trajectory]:
    return list(read_jsonl(suite / "trajectories.jsonl", "trajectory"))


@pytest.fixture(scope="module")
def tiny_model(suite: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    trajectories = _trajectories(suite)
    texts = [t["text"] for tr in trajectories for t in tr.turns] * 5
    texts += [system_message(AGENT)["content"][0]["text"], json.dumps(TOOL_SPECS)] * 3
    texts += [tr.sample.question for tr in trajectories]
    tokenizer = tiny.build_tokenizer(texts, vocab_size=1000, chat_template=tiny.load_chat_template("qwen3_vl"))
    model = tiny.build_tiny_model("qwen3_vl", tokenizer)
    processor = tiny.build_processor("qwen3_vl", tokenizer, max_pixels=PIXELS)
    return tiny.save_tiny(model, processor, tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def short_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_model`` trained with the short system prompt, as its config says (``protocol.PROMPT_KEY``)."""
    folder = tmp_path_factory.mktemp("tiny_short")
    for path in tiny_model.iterdir():
        shutil.copy2(path, folder / path.name)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "medscope_prompt": "short"}))
    return folder


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models train faster on one thread


# -- 1. completions back to protocol turns -------------------------------------------------------------------------

CROP = {"start_time": 9.5, "end_time": 14.0}


def _parsed(turns: list[str]) -> list[Any]:
    return [parse_turn(t, duration=120.0) for t in turns]


def test_turns_from_hand_made_trl_messages() -> None:
    completion: list[dict[str, Any]] = [
        {"role": "assistant", "reasoning_content": "smoke near 10 s", "content": "",
         "tool_calls": [{"type": "function", "function": {"name": "crop_video", "arguments": CROP}}]},
        {"role": "tool", "name": "crop_video", "content": [{"type": "text", "text": "[10.00s]"}]},
        {"role": "assistant", "reasoning_content": "closer", "content": "",
         "tool_calls": [{"type": "function", "function": {"name": "get_frame", "arguments": {"timestamp": 11.5}}}]},
        {"role": "tool", "name": "get_frame", "content": [{"type": "text", "text": "[11.50s]"}]},
        {"role": "assistant", "reasoning_content": "seen", "content": "<answer>[9.75, 13.50]</answer>"},
    ]
    turns = grpo.turns_from_messages(completion)
    assert _parsed(turns) == [ToolCall("crop_video", CROP, "smoke near 10 s"),
                              ToolCall("get_frame", {"timestamp": 11.5}, "closer"),
                              FinalAnswer("[9.75, 13.50]", None, "seen")]
    # What TRL keeps when its parser gives up: the raw text in content.
    raw = [{"role": "assistant", "content": "<think>hm</think>\n<answer>B</answer>"}]
    assert _parsed(grpo.turns_from_messages(raw)) == [FinalAnswer("B", None, "hm")]


def test_turns_from_trl_parsed_generations(tiny_model: Path) -> None:
    """Protocol turns as a model generates them, parsed by TRL's own response parser, come back unchanged."""
    from trl.chat_template_utils import parse_response

    processor = grpo.training_processor(tiny_model)
    tokenizer = processor.tokenizer
    # TRL parses each generation with the rendered prompt as prefix: the parser anchors on the assistant header.
    prefix = processor.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": "q"}]}],
                                           add_generation_prompt=True, tokenize=True)[0]
    texts = [render_tool_call("crop_video", CROP, "look there"),
             render_tool_call("get_frame", {"timestamp": 11.5}, "x"), render_answer("[9.75, 13.50]", "done")]
    messages = [parse_response(tokenizer, tokenizer.encode(t + "<|im_end|>"), prefix=prefix) for t in texts]
    assert messages[0]["tool_calls"] and messages[0]["reasoning_content"] == "look there"
    assert _parsed(grpo.turns_from_messages(messages)) == _parsed(texts)


# -- 2. the advantage seam -----------------------------------------------------------------------------------------

# One group of four: rewards per COMPONENTS column (accuracy, format, evidence, crop, frame, tool_used, unfinished).
GROUP = torch.tensor([
    [1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 0.0],  # right, with evidence
    [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0],  # right, called a tool, found nothing
    [0.0, 1.0, -1.0, -1.0, 0.0, 1.0, 0.0],  # wrong, bad crop: R_evi < 0 is never modulated
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],  # its first call was never run (the budget ran out): logged, not paid
])


@pytest.mark.parametrize("std_normalise", [False, True])
def test_modulation_through_the_trainer_seam_equals_ga_advantages(
    tiny_model: Path, suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, std_normalise: bool
) -> None:
    """TRL's own methods are replaced by stand-ins doing its arithmetic on a hand-made reward matrix; what the
    subclass's overrides add on top must be exactly ``rewards.ga_advantages``. (No grammar: its rows carry no
    sample to constrain.)"""
    trainer = grpo.build_trainer(_config(suite, tiny_model, tmp_path, std_normalise=std_normalise,
                                         agent=dataclasses.replace(AGENT, grammar=False)))
    weights = trainer.reward_weights  # [1, 1, 1, 0, 0, 0, 0]

    def calculate_rewards(self: Any, inputs: Any, prompts: Any, completions: Any, ids: Any) -> Any:
        return GROUP

    def generate_and_score(self: Any, inputs: Any) -> dict[str, Any]:  # TRL's arithmetic, from the same matrix
        r = (self._calculate_rewards(inputs, None, None, None) * weights).sum(dim=1)
        a = r - r.mean()
        return {"advantages": a / (r.std() + 1e-4) if std_normalise else a}

    monkeypatch.setattr(grpo.GRPOTrainer, "_calculate_rewards", calculate_rewards)
    monkeypatch.setattr(grpo.GRPOTrainer, "_generate_and_score_completions", generate_and_score)
    out = trainer._generate_and_score_completions([{}] * 4)
    rewards = (GROUP * weights).sum(dim=1).tolist()
    expected = ga_advantages(rewards, GROUP[:, 2].tolist(), (GROUP[:, 5] > 0).tolist(), std_normalise=std_normalise)
    assert out["advantages"].tolist() == pytest.approx(expected, rel=1e-5)
    assert out["advantages"].tolist() != pytest.approx(ga_advantages(
        rewards, GROUP[:, 2].tolist(), (GROUP[:, 5] > 0).tolist(), std_normalise=std_normalise, modulation=False))
    trainer.modulation = False
    unmodulated = trainer._generate_and_score_completions([{}] * 4)["advantages"].tolist()
    assert unmodulated == pytest.approx(ga_advantages(rewards, [0.0] * 4, [False] * 4, std_normalise=std_normalise))


# -- 3. a real GA-GRPO run -----------------------------------------------------------------------------------------


def _config(suite: Path, model: Path, out: Path, **overrides: Any) -> grpo.GRPOStageConfig:
    settings: dict[str, Any] = {
        "data": str(suite / "samples.jsonl"), "model": str(model), "out": str(out), "group_size": 4,
        "batch_size": 4, "max_steps": 2, "max_completion_length": 512, "lr": 1e-3,
        "gradient_checkpointing": False, "save_steps": 1, "agent": dataclasses.replace(AGENT, max_turns=3),
    }
    return grpo.GRPOStageConfig(**(settings | overrides))


@pytest.fixture(scope="module")
def warm(suite: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random model rarely writes a valid tool call: memorise the two oracle trajectories first, rendered by the
    SFT collator (as training and inference render them), with the loss on every token so that 100 plain Adam
    steps suffice (measured: at 60 the rollouts of some seeds call no tool)."""
    model = AutoModelForImageTextToText.from_pretrained(tiny_model, local_files_only=True)
    collate = sft.AgentSFTCollator(load_processor(tiny_model))
    batches = []
    for row in sft_rows(_trajectories(suite), AGENT, stage=2):
        batch = collate([row])
        batch["labels"] = batch["input_ids"].masked_fill(batch["input_ids"] == model.config.image_token_id, -100)
        batches.append(batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(100):
        for batch in batches:
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    out = tmp_path_factory.mktemp("warm")
    model.save_pretrained(out)
    load_processor(tiny_model).save_pretrained(out)
    return out


def test_ga_grpo_run_calls_the_video_tools_and_saves(suite: Path, warm: Path, tmp_path: Path) -> None:
    config = _config(suite, warm, tmp_path / "grpo")
    out = grpo.main(config)

    logs = json.loads((out / "trainer_state.json").read_text())["log_history"]
    steps = [entry for entry in logs if "loss" in entry]
    assert len(steps) == 2
    for name in grpo.COMPONENTS:
        assert all(f"rewards/{name}/mean" in entry for entry in steps), name
    assert any(entry["tools/call_frequency"] > 0 and entry["rewards/tool_used/mean"] > 0 for entry in steps)
    assert all("ga/modulated_frac" in entry for entry in steps)

    before = AutoModelForImageTextToText.from_pretrained(warm, local_files_only=True).state_dict()
    after = AutoModelForImageTextToText.from_pretrained(out, local_files_only=True).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    processor = load_processor(out)
    assert processor.chat_template == load_processor(warm).chat_template
    assert (out / "checkpoint-2").is_dir()

    # Started again on the same folder, it resumes from checkpoint-2 and has nothing left to do.
    grpo.main(config)
    again = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [entry for entry in again if "loss" in entry] == steps


def _formats_logged(out: Path) -> list[float]:
    logs = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return [entry["rewards/format/mean"] for entry in logs if "loss" in entry]


def test_rollouts_decode_under_the_protocol_grammar(suite: Path, tiny_model: Path, tmp_path: Path) -> None:
    """An untrained model's free rollouts never form the protocol (R_fmt 0); under the grammar the agent decodes
    with, its tags, calls and windows are certain, so every rollout that ends inside its budgets is well-formed."""
    agent = dataclasses.replace(AGENT, max_turns=3, max_new_tokens=24)  # the reasoning closes by token ~24
    free = grpo.main(_config(suite, tiny_model, tmp_path / "free", max_steps=1, lr=1e-12,
                             agent=dataclasses.replace(agent, grammar=False)))
    assert _formats_logged(free) == [0.0]
    constrained = grpo.main(_config(suite, tiny_model, tmp_path / "grammar", max_steps=1, lr=1e-12, agent=agent,
                                    max_completion_length=2048))
    logs = json.loads((constrained / "trainer_state.json").read_text())["log_history"]
    step = next(entry for entry in logs if "loss" in entry)
    # Only a rollout cut at its round budget (ending on a call TRL did not run) may fail the format.
    assert step["rewards/format/mean"] == pytest.approx(1.0 - step["rewards/unfinished/mean"])
    assert step["rewards/format/mean"] > 0


def test_rollout_turns_reuse_their_cache(suite: Path, warm: Path, tmp_path: Path) -> None:
    """Rollouts under the grammar keep each rollout's cache between its turns (``--prefix-cache``, the default)
    and write what they write without it: the same seed samples the same tool calls and answers, step by step."""
    logs = {}
    for cache in (True, False):
        out = grpo.main(_config(suite, warm, tmp_path / str(cache), max_steps=2, lr=1e-12, prefix_cache=cache,
                                max_completion_length=2048))  # room for the tool results' frames: later turns
        logs[cache] = [e for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert len(logs[True]) == len(logs[False]) == 2
    keys = [k for k in logs[False][0] if k.startswith(("rewards/", "completions/", "tools/"))]
    for cached, plain in zip(logs[True], logs[False], strict=True):
        assert {k: cached[k] for k in keys} == {k: plain[k] for k in keys}
        assert cached["tools/call_frequency"] > 0  # later turns were there to reuse
        assert cached["prefix_cache/reused_frac"] > 0.3
    assert "prefix_cache/reused_frac" not in logs[False][0]
    free = grpo.build_trainer(_config(suite, warm, tmp_path / "free", agent=dataclasses.replace(AGENT, grammar=False)))
    assert not free.prefix_cache  # TRL decodes free rollouts itself: nothing to keep, nothing logged


def test_rollout_turns_keep_their_samples_format(suite: Path, tiny_model: Path, tmp_path: Path) -> None:
    trainer = grpo.build_trainer(_config(suite, tiny_model, tmp_path / "a"))
    assert trainer.constraints is not None and trainer.turn_tokens == AGENT.max_new_tokens
    samples = [s for s in read_jsonl(suite / "samples.jsonl")]
    grounding = next(s for s in samples if s.task == "grounding")
    other = next(s for s in samples if s.task != "grounding")
    assert grpo.rollout_format(grounding) == grpo.TurnFormat(tools=grpo.TOOL_NAMES, windows=True,
                                                            duration=grounding.duration, closed_reasoning=True)
    assert not grpo.rollout_format(other).windows and grpo.rollout_format(other).tools == grpo.TOOL_NAMES

    trainer._formats = [grpo.rollout_format(s) for s in (grounding, grounding, other, other)]
    trainer._first_prompts = None
    first = [[1, 2, 3], [1, 2, 3], [1, 2, 4], [1, 2, 4]]
    assert trainer._row_formats(first) == trainer._formats
    # A later turn holds only the rollouts that called a tool, each its conversation so far.
    assert trainer._row_formats([[1, 2, 4, 9, 9], [1, 2, 3, 7]]) == [trainer._formats[2], trainer._formats[0]]
    with pytest.raises(RuntimeError, match="continues none"):
        trainer._row_formats([[5, 5, 5, 5]])

    free = grpo.build_trainer(_config(suite, tiny_model, tmp_path / "b",
                                      agent=dataclasses.replace(AGENT, grammar=False)))
    assert free.constraints is None


def test_lora_run_saves_a_merged_model(suite: Path, warm: Path, tmp_path: Path) -> None:
    out = grpo.main(_config(suite, warm, tmp_path / "lora", lora=True, lora_r=4, lora_alpha=8, max_steps=1))
    merged = AutoModelForImageTextToText.from_pretrained(out, local_files_only=True).state_dict()
    assert set(merged) == set(AutoModelForImageTextToText.from_pretrained(warm, local_files_only=True).state_dict())


def test_budget_warning_names_the_flags_past_five_percent() -> None:
    history = [{"rewards/unfinished/mean": share, "loss": 0.1} for share in (0.25, 0.15)] + [{"train_loss": 0.1}]
    warning = grpo.budget_warning(history)
    assert warning is not None and warning.startswith("20% ")
    assert "--max-completion-length" in warning and "--max-turns" in warning
    assert grpo.budget_warning([{"rewards/unfinished/mean": 0.05}]) is None
    assert grpo.budget_warning([]) is None


# -- 4. flags → TRL settings ---------------------------------------------------------------------------------------


def test_build_trainer_maps_the_ablation_flags(suite: Path, tiny_model: Path, tmp_path: Path) -> None:
    default = grpo.build_trainer(_config(suite, tiny_model, tmp_path / "a"))
    assert default.args.scale_rewards == "none" and default.args.beta == 0.0 and default.modulation
    assert default.reward_func_names == list(grpo.COMPONENTS)
    assert default.reward_weights.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert default.args.max_tool_calling_iterations == 3 and default.num_generations == 4
    assert all(f.config.coarse_penalty == -1.0 for f in default.reward_funcs)  # the paper's

    ablated = grpo.build_trainer(_config(suite, tiny_model, tmp_path / "b", evidence_reward=False,
                                         crop_bonus=False, modulation=False, std_normalise=True, kl=0.04,
                                         coarse_penalty=0.0))
    assert ablated.args.scale_rewards == "group" and ablated.args.beta == 0.04 and not ablated.modulation
    assert ablated.reward_weights.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert not ablated.reward_funcs[0].config.crop_bonus and ablated.ref_model is not None
    assert all(f.config.coarse_penalty == 0.0 for f in ablated.reward_funcs)

    vllm = grpo.training_args(_config(suite, tiny_model, tmp_path / "c", use_vllm=True, vllm_mode="server"))
    assert vllm.use_vllm and vllm.vllm_mode == "server"
    with pytest.raises(ValueError, match="multiple of group_size"):
        grpo.GRPOStageConfig(group_size=8, batch_size=4)


def test_cli_flags(tmp_path: Path) -> None:
    import argparse

    from medscope.config import add_config_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, grpo.GRPOStageConfig)
    args = parser.parse_args(["--data", "s.jsonl", "--model", "m", "--out", "o", "--no-evidence-reward",
                              "--no-modulation", "--std-normalise", "--kl", "0.04", "--crop-frames", "4",
                              "--coarse-penalty", "0"])
    config = config_from_args(grpo.GRPOStageConfig, args)
    assert not config.evidence_reward and not config.modulation and config.std_normalise and config.kl == 0.04
    assert config.reward.coarse_penalty == 0.0
    assert config.agent.tools.crop_frames == 4 and not config.reward.evidence_reward


@pytest.mark.parametrize("kind", ["full", "short"])
def test_rollout_prompt_is_the_agents_prompt(suite: Path, tiny_model: Path, short_model: Path, tmp_path: Path,
                                             kind: str) -> None:
    """The prompt TRL renders for a rollout (the row's prompt, the content ``reset()`` returns appended to its
    empty user turn as TRL appends it, the environment's tool schemas) is the prompt ``HFBackend`` renders for the
    agent loop's first turn; for a model trained with the short prompt, without the schemas TRL passes."""
    from trl.data_utils import prepare_multimodal_messages

    from medscope.agent import protocol
    from medscope.agent.backends.hf import HFBackend
    from medscope.video.tools import VideoTools

    model = short_model if kind == "short" else tiny_model
    config = _config(suite, model, tmp_path)
    trainer = grpo.build_trainer(config)
    row = trainer.train_dataset[0]
    env = trainer.environment_factories[None]()
    observation = env.reset(**row)
    prompt = [*row["prompt"][:-1], {**row["prompt"][-1], "content": [{"type": "text", "text": ""}, *observation]}]
    rendered = trainer.processing_class.apply_chat_template(
        [prepare_multimodal_messages(prompt)], tools=trainer.tools, add_generation_prompt=True, tokenize=False)[0]

    with VideoSource(env.sample.video) as source:
        overview = VideoTools(source, TOOLS).overview()
        first = protocol.first_user_message(env.sample.question, overview, duration=source.duration_seconds,
                                            options=env.sample.options)
    backend = HFBackend.from_pretrained(model)
    assert backend.prompt == kind and trainer.tools  # TRL still runs the environment's tools
    # the agent's prompt with the run's turn budget (TRL's rounds: test_build_trainer_maps_the_ablation_flags)
    assert rendered == backend._render([system_message(config.agent, kind), first])
    assert (f"at most {config.agent.max_turns} turns" in rendered) == (kind == "full")
    assert rendered.count("<|image_pad|>") == TOOLS.overview_frames
    assert ("# Tools" in rendered) == (kind == "full")
    assert "Look with crop_video(start_time, end_time)" in rendered if kind == "short" else "Rules:" in rendered


def test_prompt_image_fields_are_tensors_for_the_tool_loop(suite: Path, tiny_model: Path, tmp_path: Path) -> None:
    """Regression (TRL 1.16): a tool round in which every call fails returns no image, and TRL's tool loop then
    splits the *prompt's* image fields with tensor methods; its per-environment tokenisation leaves them as lists
    of numpy rows, which crashed a 40-step run at step 13. The trainer must hand them over as tensors."""
    from trl.trainer.utils import split_pixel_values_by_grid

    trainer = grpo.build_trainer(_config(suite, tiny_model, tmp_path))
    rows = [trainer.train_dataset[i] for i in range(2)]
    prompts = []
    for row in rows:
        observation = trainer.environment_factories[None]().reset(**row)
        prompts.append([*row["prompt"][:-1], {**row["prompt"][-1], "content": [{"type": "text", "text": ""},
                                                                              *observation]}])
    trainer._batch_environments = [None] * len(prompts)
    _, images, fields = trainer._tokenize_prompts(prompts)
    assert isinstance(fields["image_grid_thw"], torch.Tensor) and isinstance(fields["pixel_values"], torch.Tensor)
    split = split_pixel_values_by_grid({**fields, "num_images": [len(i) for i in images]})
    assert len(split["pixel_values"]) == 2 and split["image_grid_thw"][0].shape[0] == TOOLS.overview_frames
