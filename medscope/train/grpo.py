"""Stage 3, GA-GRPO (README, "Training"): TRL's ``GRPOTrainer`` rolls the policy out through the real video tools
(``VideoToolEnv``), scores each trajectory with the pure rewards of ``medscope.train.rewards`` (where their rules
are written out), and rescales its advantages with the evidence-weighted modulation.

- ``turns_from_messages`` turns a TRL completion (assistant / tool messages) back into protocol turn texts, so the
  rewards score exactly what they score at evaluation;
- ``RewardComponent``: one logged reward column each (accuracy, format, evidence, crop, frame, tool_used,
  unfinished); the weights come from ``RewardConfig`` and only accuracy, format and evidence count towards R;
- ``GAGRPOTrainer``: ``GRPOTrainer`` with the modulation and, where the agent decodes under the protocol grammar,
  rollouts decoded under it too (``rollout_format``);
- ``build_trainer`` builds everything without training (a GPU/vLLM config can be inspected on a CPU machine via
  ``training_args``); ``main`` trains, resumes from the last ``checkpoint-*``, and saves model + processor.

Not here: the tool loop, the loss and the logging are TRL's, unpatched (generation too, but for the grammar's
logits processor); the rewards are rewards.py's.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import AutoModelForImageTextToText, ProcessorMixin, Trainer
from trl import GRPOConfig, GRPOTrainer
from trl.chat_template_utils import add_response_schema
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import pad

from medscope.agent.backends.hf import BatchGrammar, TurnConstraints
from medscope.agent.backends.prefix_cache import Frame, PrefixCache, row_frames, supports_prefix_cache
from medscope.agent.backends.processors import load_processor
from medscope.agent.grammar import TOOL_NAMES, TurnFormat
from medscope.agent.protocol import folder_prompt, tool_schemas
from medscope.config import write_run_config
from medscope.suite.records import Sample, read_jsonl, sample_from_dict
from medscope.train import rewards
from medscope.train.configs import GRPOStageConfig
from medscope.train.data import grpo_rows
from medscope.train.env import VideoToolEnv
from medscope.train.rewards import RewardConfig
from medscope.train.sft import LORA_TARGETS, last_checkpoint, save_model
from medscope.video.tools import ToolConfig

log = logging.getLogger(__name__)

# GAGRPOTrainer overrides private GRPOTrainer methods (_calculate_rewards, _generate_and_score_completions,
# _tokenize_prompts) as TRL 1.16 has them; another TRL may call or shape them differently and train silently wrong.
SUPPORTED_TRL = ("1.16", "1.17")  # >= first, < second


class UnsupportedVersionError(ValueError):
    """An installed library outside the versions this code is tested with, where that matters."""


def check_trl(version: str | None = None) -> None:
    """Refuse a TRL outside ``SUPPORTED_TRL``, naming the range and the fix."""
    import trl
    from packaging.version import Version

    found = version or trl.__version__
    low, high = SUPPORTED_TRL
    if not Version(low) <= Version(found) < Version(high):
        raise UnsupportedVersionError(
            f"GA-GRPO needs TRL >={low},<{high} (it extends private GRPOTrainer methods as they are there); this is "
            f"TRL {found}. Install the tested version: pip install 'trl>={low},<{high}' (or pip install -c "
            "constraints.txt -e .[train])")


# The reward columns TRL logs (``rewards/<name>/mean``), in order. Only the first three enter R; the others are
# logged with weight 0, and the modulation reads ``evidence`` and ``tool_used`` back from the gathered columns.
COMPONENTS: tuple[str, ...] = ("accuracy", "format", "evidence", "crop", "frame", "tool_used", "unfinished")


# -- completions → protocol turns --------------------------------------------------------------------------------


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(part.get("text") or "" for part in content if isinstance(part, Mapping))
    return ""


def _tool_call_text(call: Mapping[str, Any]) -> str:
    function = call.get("function", call)
    payload = {"name": function.get("name"), "arguments": function.get("arguments", {})}
    return f"<tool_call>{json.dumps(payload)}</tool_call>"


def turns_from_messages(completion: Sequence[Mapping[str, Any]]) -> list[str]:
    """The protocol text of each assistant message of a TRL completion: ``<think>…</think>`` from
    ``reasoning_content``, then the content and ``<tool_call>`` blocks from ``tool_calls``. Tool messages are
    skipped (the rewards read the calls, not the frames)."""
    turns = []
    for message in completion:
        if message.get("role") != "assistant":
            continue
        reasoning = message.get("reasoning_content")
        head = f"<think>{reasoning.strip()}</think>\n" if isinstance(reasoning, str) else ""
        body = [_text(message.get("content")).strip()]
        body += [_tool_call_text(call) for call in message.get("tool_calls") or []]
        turns.append(head + "\n".join(b for b in body if b))
    return turns


# -- rewards -------------------------------------------------------------------------------------------------------


def _evidence(turns: Sequence[str], sample: Sample, config: RewardConfig) -> float:
    # The raw R_crop + R_frame: --no-evidence-reward zeroes its weight in R, not the logged value.
    return rewards.crop_reward(turns, sample, config) + rewards.frame_reward(turns, sample, config)


_SCORERS = {
    "accuracy": rewards.accuracy_reward,
    "format": rewards.format_reward,
    "evidence": _evidence,
    "crop": rewards.crop_reward,
    "frame": rewards.frame_reward,
    "unfinished": rewards.unfinished,
}


class RewardComponent:
    """One reward component as a TRL reward function, ``f(completions=, sample=, environments=, **_) -> list``;
    ``sample`` is the dataset column (a Sample as JSON), ``environments`` the rollouts' ``VideoToolEnv``s."""

    def __init__(self, name: str, config: RewardConfig) -> None:
        if name not in COMPONENTS:
            raise ValueError(f"unknown reward component {name!r}: expected one of {COMPONENTS}")
        self.__name__ = name  # TRL logs rewards/<__name__>/mean
        self.config = config

    def __call__(
        self,
        completions: Sequence[Sequence[Mapping[str, Any]]],
        sample: Sequence[str],
        environments: Sequence[VideoToolEnv] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        scores = []
        for i, (completion, row) in enumerate(zip(completions, sample, strict=True)):
            turns = turns_from_messages(completion)
            if self.__name__ == "tool_used":  # what the environment really ran, else what the turns asked for
                env = environments[i] if environments is not None else None
                used = env.calls > 0 if env is not None else rewards.total_reward(turns, _sample(row)).used_tool
                scores.append(float(used))
            else:
                scores.append(_SCORERS[self.__name__](turns, _sample(row), self.config))
        return scores


def _sample(row: str) -> Sample:
    return sample_from_dict(json.loads(row))


def reward_functions(config: RewardConfig) -> list[RewardComponent]:
    return [RewardComponent(name, config) for name in COMPONENTS]


def reward_weights(config: RewardConfig) -> list[float]:
    """Weights of ``COMPONENTS`` in R = w_acc·R_acc + w_fmt·R_fmt + w_evi·R_evi; the rest are logged only."""
    paid = {"accuracy": config.w_acc, "format": config.w_fmt,
            "evidence": config.w_evi if config.evidence_reward else 0.0}
    return [paid.get(name, 0.0) for name in COMPONENTS]


# -- the trainer ---------------------------------------------------------------------------------------------------


def modulate_advantages(
    advantages: torch.Tensor, evidence: torch.Tensor, used_tool: torch.Tensor, *, up: float = 1.2, down: float = 0.8
) -> torch.Tensor:
    """``rewards.modulate`` applied row by row to a (N,) advantage tensor."""
    values = [rewards.modulate(a, e, t > 0, up=up, down=down)
              for a, e, t in zip(advantages.tolist(), evidence.tolist(), used_tool.tolist(), strict=True)]
    return torch.tensor(values, dtype=advantages.dtype, device=advantages.device)


_IMAGE_FIELDS = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw")


class GAGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` with GA-GRPO's evidence-weighted advantage modulation and grammar-constrained rollouts.

    TRL computes advantages inline in ``_generate_and_score_completions`` and has no hook for reshaping them, so
    for the modulation this subclass overrides two methods, both calling TRL's own first:

    - ``_calculate_rewards``: keeps the gathered (N_global, n_funcs) reward matrix it returns;
    - ``_generate_and_score_completions``: rescales this process's rows of ``advantages`` (local row i is global
      row ``process_index * len(inputs) + i``) with ``rewards.modulate``, reading R_evi from the ``evidence``
      column and the tool use from the ``tool_used`` column of that matrix.

    The group mean (and std) is TRL's, so modulation follows normalisation as in ``rewards.ga_advantages``. TRL's
    completions table still shows the unmodulated advantages; ``ga/modulated_frac`` logs how many rows changed.

    A third, with ``constraints``: ``_generate_single_turn`` decodes every rollout turn under the protocol grammar,
    as the agent decodes at inference (``AgentConfig.grammar``): the tags, the call's JSON and a "when" answer's
    windows are certain, every word, tool and number is the policy's. TRL's transformers path has no way to pass
    a logits processor, so the override repeats it with one (vLLM and continuous batching go to TRL unchanged).
    Which sample a row belongs to comes from ``_generate_and_score_completions``'s inputs: the first turn has one
    row per input, in order; a later turn's row continues one of those prompts. With ``prefix_cache`` each
    rollout's attention cache is kept between its turns within a step (TRL passes a later turn the earlier
    tokens as they were, so the cache holds all of them): a turn encodes only the tool result and its frames, as
    the agent's ``HFBackend`` does. A new step starts with no cache, its weights being new.

    A fourth override works around a TRL 1.16 bug: ``_tokenize_prompts`` merges the per-prompt image fields of
    environment rollouts into Python lists of numpy rows, and the tool loop later calls tensor methods on them
    whenever a tool round returns no image at all (every call in the batch was a tool error) — an
    ``AttributeError: 'list' object has no attribute 'prod'`` mid-run. We hand TRL tensors instead.
    """

    def __init__(self, *args: Any, modulation: bool = True, up: float = 1.2, down: float = 0.8,
                 constraints: TurnConstraints | None = None, explicit_evidence: bool = False, turn_tokens: int = 512,
                 prefix_cache: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only the rollouts this class decodes itself (under the grammar, transformers) can keep their caches.
        self.prefix_cache = (prefix_cache and constraints is not None and not self.use_vllm
                             and not self.use_transformers_continuous_batching and supports_prefix_cache(self.model))
        self._prefix: PrefixCache | None = None  # the step's rollouts' caches, while they are generated
        self.modulation, self.up, self.down = modulation, up, down
        self.constraints, self.explicit_evidence, self.turn_tokens = constraints, explicit_evidence, turn_tokens
        self._formats: list[TurnFormat] = []  # the batch's rollouts, one per input row
        self._first_prompts: list[list[int]] | None = None
        missing = {"evidence", "tool_used"} - set(self.reward_func_names)
        if modulation and missing:
            raise ValueError(f"the modulation needs the reward functions {sorted(missing)}; have "
                             f"{self.reward_func_names}")
        self._rewards_per_func: torch.Tensor | None = None

    def _tokenize_prompts(self, prompts: list[Any]) -> tuple[Any, Any, dict[str, Any]]:
        prompt_ids, images, fields = super()._tokenize_prompts(prompts)
        for key in _IMAGE_FIELDS:
            value = fields.get(key)
            if isinstance(value, list) and value and not isinstance(value[0], list):
                fields[key] = torch.as_tensor(np.stack([np.asarray(row) for row in value]))
        return prompt_ids, images, fields

    def _calculate_rewards(
        self, inputs: list[dict[str, Any]], prompts: list[Any], completions: list[Any], completion_ids_list: list[Any]
    ) -> torch.Tensor:
        self._rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._rewards_per_func

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if self.constraints is not None:
            self._formats = [rollout_format(_sample(row["sample"]), self.explicit_evidence) for row in inputs]
            self._first_prompts = None
        self._prefix = PrefixCache(capacity=2 * len(inputs)) if self.prefix_cache else None
        try:
            out = super()._generate_and_score_completions(inputs)
        finally:
            if self._prefix is not None:  # how much of the rollouts' prompts came from the cache
                mode = "train" if self.model.training else "eval"
                total = max(1, self._prefix.reused + self._prefix.encoded)
                self._metrics[mode]["prefix_cache/reused_frac"].append(self._prefix.reused / total)
            self._prefix = None
        if not self.modulation or self._rewards_per_func is None:
            return out
        start = self.accelerator.process_index * len(inputs)
        local = self._rewards_per_func[start:start + len(inputs)]
        names = self.reward_func_names
        before = out["advantages"]
        out["advantages"] = modulate_advantages(before, local[:, names.index("evidence")],
                                                local[:, names.index("tool_used")], up=self.up, down=self.down)
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["ga/modulated_frac"].append((out["advantages"] != before).float().mean().item())
        self._rewards_per_func = None
        return out

    def _row_formats(self, prompt_ids: Sequence[Sequence[int]]) -> list[TurnFormat]:
        if self._first_prompts is None:  # the rollouts' first turn: one row per input
            if len(prompt_ids) != len(self._formats):
                raise RuntimeError(f"{len(prompt_ids)} rollouts to start for {len(self._formats)} inputs")
            self._first_prompts = [list(ids) for ids in prompt_ids]
            return list(self._formats)
        rows = []
        for ids in prompt_ids:  # a later turn: the conversation so far starts with its rollout's first prompt
            match = [i for i, first in enumerate(self._first_prompts) if list(ids[: len(first)]) == first]
            if not match:
                raise RuntimeError("a rollout turn continues none of the batch's prompts")
            rows.append(self._formats[match[0]])
        return rows

    def _frames(self, images: Any, inputs: dict[str, Any]) -> list[list[Frame]] | None:
        """Each row's images as the prefix cache tells them apart (None for a batch with videos)."""
        if "pixel_values_videos" in inputs:
            return None
        merge = int(getattr(self.processing_class.image_processor, "merge_size", 1))
        rows = [list(row or []) for row in images or [None] * len(inputs["input_ids"])]
        return row_frames(rows, inputs.get("image_grid_thw"), merge)

    def _generate_single_turn(self, prompt_ids: Any, images: Any, multimodal_fields: dict[str, Any],
                              num_generations: int, has_tool_images: bool = False) -> tuple[list[list[int]], None]:
        if self.constraints is None or self.use_vllm or self.use_transformers_continuous_batching:
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                 has_tool_images)
        formats = self._row_formats(prompt_ids)
        # From here on TRL 1.16's transformers path, with the grammar passed to generate.
        rows = [torch.tensor(ids) for ids in prompt_ids]
        padded = pad(rows, padding_value=self._tokenizer.pad_token_id, padding_side="left",
                     pad_to_multiple_of=self.pad_to_multiple_of)
        inputs: dict[str, Any] = {"input_ids": padded,
                                  "attention_mask": pad([torch.ones_like(r) for r in rows], padding_value=0,
                                                        padding_side="left",
                                                        pad_to_multiple_of=self.pad_to_multiple_of)}
        for key, value in multimodal_fields.items():
            if isinstance(value, torch.Tensor):
                inputs[key] = value
            elif isinstance(value, list) and value and isinstance(value[0], list):  # per token: left-padded
                inputs[key] = pad([torch.tensor(x) for x in value], padding_value=0, padding_side="left",
                                  pad_to_multiple_of=self.pad_to_multiple_of)
            else:
                inputs[key] = torch.tensor(np.array(value))
        if self._is_vlm and self.tools and has_tool_images:  # the tool results' images, as TRL marks them
            kinds = torch.zeros_like(padded)
            if self._image_pad_token_id is not None:
                kinds[padded == self._image_pad_token_id] = 1
            if self._video_pad_token_id is not None:
                kinds[padded == self._video_pad_token_id] = 2
            inputs["mm_token_type_ids" if "image_grid_thw" in inputs else "token_type_ids"] = kinds
        inputs = Trainer._prepare_inputs(self, inputs)  # to the device (GRPOTrainer's own would start a rollout)
        width = padded.size(1)
        grammar = BatchGrammar([self.constraints.processor(f, width, self.turn_tokens) for f in formats])
        frames = self._frames(images, inputs) if self._prefix is not None else None
        with (
            unwrap_model_for_generation(self.model_wrapped, self.accelerator,
                                        gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                                        generation_kwargs=self.generation_kwargs,
                                        gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs)
            as model,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            if self._prefix is not None and frames is not None:
                start = self._prefix.prepare(model, inputs, frames, self._image_pad_token_id or -1)
                # The cache comes back only in a dict output; asked for beside a generation_config, transformers
                # warns that this will stop working, so it goes into a copy of the config.
                config = copy.deepcopy(self.generation_config)
                config.return_dict_in_generate = True
                generated = model.generate(**start, generation_config=config, logits_processor=[grammar])
                self._prefix.keep(model, generated.sequences, inputs["attention_mask"], generated.cache, frames)
                out = generated.sequences
            else:
                out = model.generate(**inputs, generation_config=self.generation_config, logits_processor=[grammar])
        completions = out[:, width:].cpu()
        ends = torch.isin(completions, torch.tensor(self.eos_token_ids))
        lengths = torch.where(ends.any(dim=1), ends.int().argmax(dim=1) + 1, completions.size(1))
        return [row[:n].tolist() for row, n in zip(completions, lengths.tolist(), strict=True)], None


# -- building and running ------------------------------------------------------------------------------------------


def training_processor(folder: str | Path) -> ProcessorMixin:
    """The processor TRL renders rollouts with: left padding (TRL aligns ``mm_token_type_ids`` to left-padded ids)
    and TRL's response parser for the chat template (``<tool_call>`` → ``tool_calls``; raises for a template TRL
    does not know). TRL renders the tool schemas of ``VideoToolEnv`` (equal to ``TOOL_SPECS``) into the prompt, as
    ``HFBackend`` and SFT do; for a model trained with the short system prompt, which names the tools itself, the
    template is told to show none (TRL always passes them). Save the stock processor, not this one."""
    processor = add_response_schema(load_processor(folder))
    processor.tokenizer.padding_side = "left"
    if tool_schemas(folder_prompt(folder)) is None:
        # A top-level set shadows the ``tools`` TRL passes; parsing the model's tool calls does not need them.
        processor.chat_template = "{%- set tools = none %}" + processor.chat_template
    return processor


def environment(tools: ToolConfig) -> type[VideoToolEnv]:
    """``VideoToolEnv`` sized by ``tools``; TRL builds one instance per concurrent rollout from this class."""
    return type("VideoToolEnv", (VideoToolEnv,), {"tool_config": tools, "__module__": __name__})


def training_args(config: GRPOStageConfig) -> GRPOConfig:
    cuda = torch.cuda.is_available()
    return GRPOConfig(
        output_dir=config.out,
        learning_rate=config.lr,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        num_generations=config.group_size,
        max_completion_length=config.max_completion_length,
        max_tool_calling_iterations=config.agent.max_turns,
        temperature=config.temperature,
        beta=config.kl,
        scale_rewards="group" if config.std_normalise else "none",
        reward_weights=reward_weights(config.reward),
        use_vllm=config.use_vllm,
        vllm_mode=config.vllm_mode,
        activation_checkpointing=config.gradient_checkpointing,  # transformers 5's name for gradient checkpointing
        activation_checkpointing_kwargs={"use_reentrant": False},
        bf16=cuda and torch.cuda.is_bf16_supported(),  # autocast; the weights stay fp32 (lr 1e-6 underflows bf16)
        use_cpu=not cuda,
        save_strategy="steps",
        save_steps=config.save_steps,
        logging_steps=config.logging_steps,
        report_to=config.report_to,  # TensorBoard writes under out/runs/
        seed=config.seed,
    )


def _samples(config: GRPOStageConfig) -> list[Sample]:
    samples = list(read_jsonl(config.data))
    samples = samples[: config.limit] if config.limit else samples
    if not samples:
        raise ValueError(f"no samples in {config.data}")
    return samples


def rollout_format(sample: Sample, explicit_evidence: bool = False) -> TurnFormat:
    """The grammar of a rollout's turns, as the agent loop sets it, except that every turn may call a tool (TRL
    ends a rollout at its round budget instead of forcing an answer; ``rewards.unfinished`` counts those) and
    that the reasoning must be written and closed, as TRL's response parser needs to find the call after it."""
    return TurnFormat(tools=TOOL_NAMES, windows=sample.task == "grounding", explicit_evidence=explicit_evidence,
                      duration=sample.duration, closed_reasoning=True)


def rollout_constraints(config: GRPOStageConfig, tokenizer: Any) -> TurnConstraints | None:
    """The grammar's processors for the rollouts when the agent decodes under it (``--grammar``, the default), so
    that training scores the turns inference would write; None with ``--no-grammar``, or with vLLM, whose
    rollouts TRL generates without a way to constrain them to a Lark grammar (a warning says so)."""
    if not config.agent.grammar:
        return None
    if config.use_vllm:
        log.warning("GA-GRPO: vLLM rollouts are decoded freely (TRL passes them no grammar); the agent decodes "
                    "under the protocol grammar, so format failures in training are ones inference would not make")
        return None
    return TurnConstraints(tokenizer)


def build_trainer(config: GRPOStageConfig) -> GAGRPOTrainer:
    """Model, processor, prompts, rewards and environment wired into a ``GAGRPOTrainer``; trains nothing."""
    check_trl()
    if not config.data or not config.model or not config.out:
        raise ValueError("GA-GRPO needs --data SAMPLES.jsonl, --model DIR and --out DIR")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # environment_factory is "experimental" in TRL 1.x
    peft_config = None
    if config.lora:
        from peft import LoraConfig

        # The language model's projections only, as in SFT: the vision tower stays as it is.
        peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, target_modules=LORA_TARGETS,
                                 task_type="CAUSAL_LM")
    # Loaded from its folder, so that with kl > 0 TRL re-creates the reference model from _name_or_path.
    model = AutoModelForImageTextToText.from_pretrained(config.model, local_files_only=True, dtype=torch.float32)
    processor = training_processor(config.model)
    return GAGRPOTrainer(
        model=model,
        reward_funcs=reward_functions(config.reward),
        args=training_args(config),
        train_dataset=Dataset.from_list(grpo_rows(_samples(config), config.agent, folder_prompt(config.model))),
        processing_class=processor,
        environment_factory=environment(config.agent.tools),
        peft_config=peft_config,
        modulation=config.modulation,
        constraints=rollout_constraints(config, processor.tokenizer),
        explicit_evidence=config.agent.explicit_evidence,
        turn_tokens=min(config.agent.max_new_tokens, config.max_completion_length),
        prefix_cache=config.prefix_cache,
    )


def save(trainer: GAGRPOTrainer, config: GRPOStageConfig) -> Path:
    """The trained weights (LoRA merged) and the stock processor of the starting model, as one folder that
    ``HFBackend.from_pretrained`` loads, with the run's config (``run_config.yaml``) and logs
    (``trainer_state.json``). Written the way the SFT stages write theirs (``sft.save_model``)."""
    out = Path(config.out)
    model = trainer.accelerator.unwrap_model(trainer.model)
    if config.lora:
        model = model.merge_and_unload()
    if trainer.accelerator.is_main_process:
        save_model(model, load_processor(config.model), out, source=Path(config.model))
        trainer.state.save_to_json(str(out / "trainer_state.json"))  # the logged rewards, step by step
    return out


def budget_warning(log_history: Sequence[Mapping[str, Any]], *, limit: float = 0.05) -> str | None:
    """What to change when more than ``limit`` of the run's rollouts ended on a tool call nobody ran (the
    ``unfinished`` column): the trainer's budget, not the policy, failed them, and R_fmt = 0 penalised the
    episodes that looked most. medscope-tiny's 6-round rollouts at 1,024 tokens: 10 of 48; at 2,048: none."""
    shares = [entry["rewards/unfinished/mean"] for entry in log_history if "rewards/unfinished/mean" in entry]
    share = sum(shares) / len(shares) if shares else 0.0
    if share <= limit:
        return None
    return (f"{share:.0%} of the GA-GRPO rollouts ended on a tool call that was not run: the rollout ran out of "
            "--max-completion-length (tool results and their frames count) or of --max-turns tool rounds before "
            "it. Inference has no token budget (a call cut by --max-completion-length would have run), so those "
            "rollouts scored R_fmt = 0 for the budget. Raise --max-completion-length (or --max-turns) and train "
            "again.")


def main(config: GRPOStageConfig) -> Path:
    """Train (resuming from the last ``checkpoint-*`` in ``out``) and save the model to ``out``; warn when the
    budget cut the rollouts (``budget_warning``)."""
    trainer = build_trainer(config)
    write_run_config(config, Path(config.out))
    trainer.train(resume_from_checkpoint=last_checkpoint(Path(config.out)))
    warning = budget_warning(trainer.state.log_history)
    if warning:
        log.warning(warning)
    return save(trainer, config)
