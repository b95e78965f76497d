"""Stages 1 and 2: supervised fine-tuning on conversations in the agent's exact protocol, with TRL's SFTTrainer.

Stage 1 (warm-up) trains on ``samples.jsonl`` (evidence frames + question → answer), stage 2 (cold start) on
``trajectories.jsonl`` (the teacher's multi-turn tool-calling episodes, frames re-extracted by replaying the
calls). Both become rows of ``medscope.train.data`` and are tokenised by ``AgentSFTCollator``, which renders
each conversation with the model's training chat template (the official template plus ``{% generation %}``
markers) and the system prompt the model's config names (``protocol.model_prompt``; with the full one, the tool
schemas too), exactly as a GRPO rollout and ``HFBackend`` render it, and computes the loss on the assistant
turns only. Tool results keep their frames: TRL's own vision collator cannot put images inside ``tool``
messages, ours can.

A run writes ``checkpoint-*`` folders into ``out`` and, at the end, the model (merged if trained with LoRA)
and its processor, so ``HFBackend.from_pretrained(out)`` loads it. A killed run started again with the same
``out`` resumes from its last complete checkpoint. This module does not build the tiny model (``tiny.py``)
or the data (``medscope suite build``).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from medscope.agent.backends.base import Message, tool_messages_as_user
from medscope.agent.backends.processors import (
    Geometry,
    fit_image,
    image_geometry,
    load_processor,
    template_shows_tool_images,
)
from medscope.agent.protocol import folder_prompt, tool_schemas
from medscope.config import write_run_config
from medscope.io import write_text_atomic
from medscope.suite.records import Sample, Trajectory, read_jsonl
from medscope.train.configs import SFTStageConfig
from medscope.train.data import UNTRAINED, fill_images, sft_rows
from medscope.video.tools import TOOL_SPECS

log = logging.getLogger(__name__)

# LoRA goes on the language model's projections only: the vision tower stays as pretrained (Qwen2.5-VL's vision
# MLP reuses the names gate/up/down_proj, hence the anchor), and lm_head is not adapted.
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
CHECKPOINT_PREFIX = "checkpoint-"


def renders_tool_images(processor: Any, chat_template: str) -> bool:
    """Whether ``chat_template`` shows images inside ``tool`` messages (the backend's probe, on this template)."""
    image_token = getattr(processor, "image_token", "<|image_pad|>")
    return template_shows_tool_images(
        lambda convo: str(processor.apply_chat_template(convo, chat_template=chat_template, tokenize=False)),
        image_token)


@dataclass
class AgentSFTCollator:
    """Rows of ``medscope.train.data`` → a padded batch with labels on the assistant turns only.

    ``chat_template`` defaults to the training variant of the processor's template (TRL's copy with
    ``{% generation %}`` markers, byte-identical otherwise). Assistant turns stay plain text
    (``<think>…</think>\\n<tool_call>{…}</tool_call>``), which is what the model generates at inference.
    Templates that cannot show images in ``tool`` messages get them as user turns, as ``HFBackend`` sends them.
    """

    processor: Any
    tools: Sequence[dict[str, Any]] = TOOL_SPECS  # () for a model trained with the short prompt
    chat_template: str | None = None
    tool_messages_as_user: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        if self.chat_template is None:
            from trl.chat_template_utils import get_training_chat_template

            self.chat_template = get_training_chat_template(self.processor) or self.processor.chat_template
        self.tool_messages_as_user = not renders_tool_images(self.processor, str(self.chat_template))

    def conversations(self, examples: Sequence[dict[str, Any]]) -> list[list[Message]]:
        convs = [fill_images(example["messages"], example["images"]) for example in examples]
        return [tool_messages_as_user(c) for c in convs] if self.tool_messages_as_user else convs

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        from transformers import BatchFeature

        conversations = self.conversations(examples)
        untrained = [[bool(m.pop(UNTRAINED, False)) for m in c if m["role"] == "assistant"] for c in conversations]
        # Lists first, tensors after: with tensors, transformers (5.24) finds the assistant tokens by iterating
        # the offset-mapping tensor element by element, 9% of a curriculum ``then`` step; over lists the same
        # loop is half the collation time. The batch is the same to the bit.
        batch = BatchFeature(dict(self.processor.apply_chat_template(
            conversations,
            tools=list(self.tools) or None,
            chat_template=self.chat_template,
            tokenize=True,
            return_dict=True,
            return_tensors=None,
            return_assistant_tokens_mask=True,
            processor_kwargs={"padding": True, "padding_side": "right", "add_special_tokens": False},
        )), tensor_type="pt")
        assistant = batch.pop("assistant_masks")
        for row, flags in enumerate(untrained):
            if any(flags):
                _mask_turns(assistant[row], flags)
        labels = batch["input_ids"].clone()
        labels[(batch["attention_mask"] == 0) | (assistant == 0)] = -100
        batch["labels"] = labels
        return dict(batch)


def _mask_turns(mask: Any, untrained: Sequence[bool]) -> None:
    """Zero, in one row's assistant mask, the spans of the assistant turns flagged in ``untrained`` (the k-th
    run of ones is the k-th assistant turn: tool or user turns always separate two of them)."""
    values = mask.tolist()
    runs = [i for i, v in enumerate(values) if v and (i == 0 or not values[i - 1])]
    if len(runs) != len(untrained):
        raise ValueError(f"the chat template marks {len(runs)} assistant spans for {len(untrained)} assistant "
                         "turns: cannot tell which tokens belong to an untrained turn")
    for start, skip in zip(runs, untrained, strict=True):
        end = start
        while end < len(values) and values[end]:
            end += 1
        if skip:
            mask[start:end] = 0


def load_rows(config: SFTStageConfig, prompt: str, geometry: Geometry | None = None) -> list[dict[str, Any]]:
    """The stage's conversations: samples (stage 1) or trajectories (stage 2), replayed on their videos, behind the
    system prompt ``prompt`` (the one the model is trained with), frames fitted to ``geometry`` (the processor's)."""
    kind: Literal["sample", "trajectory"] = "sample" if config.stage == 1 else "trajectory"
    records: list[Sample | Trajectory] = []
    for record in read_jsonl(config.data, kind):
        if config.limit and len(records) >= config.limit:
            break
        records.append(record)
    if not records:
        raise ValueError(f"{config.data} holds no {kind} records")
    fit = None if geometry is None else partial(fit_image, geometry=geometry)
    return sft_rows(records, config.agent, stage=config.stage, repair=config.repair, prompt=prompt, fit=fit)


def frames_dataset(rows: Sequence[dict[str, Any]]) -> Any:
    """Rows as a ``datasets.Dataset`` whose ``images`` column is a list of ``Image()`` (PNG bytes, lossless; read
    back as PIL). The frames are encoded here at zlib level 1: ``datasets`` would encode them at PIL's default
    level 6, four times slower for PNGs 20% smaller, and that encoding was a fifth of the tiny recipe's SFT."""
    import datasets

    def png(image: Any) -> dict[str, Any]:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)
        return {"bytes": buffer.getvalue(), "path": None}

    encoded = [{**row, "images": [png(image) for image in row["images"]]} for row in rows]
    return datasets.Dataset.from_list(encoded).cast_column("images", datasets.List(datasets.Image()))


ROWS_KEY = "rows_key.json"


def rows_key(config: SFTStageConfig, prompt: str, geometry: Geometry | None) -> dict[str, Any]:
    """What the rows depend on: the data file as it is now, the prompt, the frames' geometry and the settings that
    choose and render them. Rows built beforehand are used only under the same key."""
    data = Path(config.data).resolve()
    stat = data.stat()
    return {"data": str(data), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "stage": config.stage,
            "limit": config.limit, "repair": config.repair, "prompt": prompt,
            "geometry": list(geometry) if geometry else None, "agent": json.loads(json.dumps(asdict(config.agent)))}


def save_rows(config: SFTStageConfig, source: str | Path, folder: Path) -> None:
    """Build the stage's rows for a model whose processor and prompt are ``source``'s and save them in ``folder``
    (``datasets`` on disk and their key), so that ``main`` with ``rows=folder`` skips building them: the tiny
    recipe builds them while the curriculum trains, on the core its two threads leave half idle."""
    processor = load_processor(source)
    prompt, geometry = folder_prompt(Path(source)), image_geometry(processor)
    dataset = frames_dataset(load_rows(config, prompt, geometry))
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    dataset.save_to_disk(str(tmp))
    write_text_atomic(tmp / ROWS_KEY, json.dumps(rows_key(config, prompt, geometry), indent=1) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def stage_rows(config: SFTStageConfig, prompt: str, geometry: Geometry | None) -> Any:
    """The stage's rows as a dataset: those saved in ``config.rows`` when built from the same key, else built."""
    if not config.rows:
        return frames_dataset(load_rows(config, prompt, geometry))
    import datasets

    folder = Path(config.rows)
    saved = json.loads((folder / ROWS_KEY).read_text()) if (folder / ROWS_KEY).is_file() else None
    wanted = rows_key(config, prompt, geometry)
    if saved != wanted:
        why = "no rows saved there" if saved is None else "built with other " + ", ".join(
            sorted(k for k in wanted if saved.get(k) != wanted[k]))
        raise ValueError(f"--rows {folder}: {why}; build them again (sft.save_rows) or drop --rows to build them "
                         "in this run")
    return datasets.load_from_disk(str(folder))


def last_checkpoint(out: Path) -> Path | None:
    """The newest ``checkpoint-N`` that was saved completely (the trainer writes ``trainer_state.json`` last)."""
    if not out.is_dir():
        return None
    done = [p for p in out.glob(CHECKPOINT_PREFIX + "*")
            if p.name[len(CHECKPOINT_PREFIX):].isdigit() and (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]), default=None)


def save_model(model: Any, processor: Any, out: Path, *, source: Path) -> Path:
    """Write model and processor into ``out`` through a temporary folder, ``config.json`` last, so that a
    folder with a config holds a complete model; copies the source's video processor config if it had one."""
    tmp = out / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    video_config = source / "video_preprocessor_config.json"
    if video_config.is_file() and not (tmp / video_config.name).exists():
        shutil.copy2(video_config, tmp / video_config.name)
    (out / "config.json").unlink(missing_ok=True)
    for path in sorted(tmp.iterdir(), key=lambda p: p.name == "config.json"):
        os.replace(path, out / path.name)
    tmp.rmdir()
    return out


def main(config: SFTStageConfig) -> Path:
    """Train one stage; returns ``out``, which then holds the trained model and its processor."""
    import torch
    from transformers import AutoModelForImageTextToText
    from trl import SFTConfig, SFTTrainer

    if not config.data or not config.model or not config.out:
        raise ValueError("sft needs --data FILE, --model DIR and --out DIR")
    source, out = Path(config.model), Path(config.out)
    write_run_config(config, out)
    prompt = folder_prompt(source)  # rows and collator render the one prompt the model's config names
    processor = load_processor(source)
    dataset = stage_rows(config, prompt, image_geometry(processor))
    model = AutoModelForImageTextToText.from_pretrained(source, local_files_only=True, dtype="auto")
    on_gpu = torch.cuda.is_available()
    args = SFTConfig(
        output_dir=str(out),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.lr,
        lr_scheduler_type="cosine",
        warmup_steps=0.03,  # a fraction of the updates
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        activation_checkpointing=config.gradient_checkpointing,  # transformers 5 renamed gradient_checkpointing
        activation_checkpointing_kwargs={"use_reentrant": False},
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        use_cpu=not on_gpu,
        max_length=None,  # truncating would cut image tokens, which the processor rejects
        assistant_only_loss=False,  # the collator masks
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        logging_steps=1,
        seed=config.seed,
        report_to=config.report_to,  # TensorBoard writes under out/runs/
    )
    peft_config = None
    if config.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.05,
                                 target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    collator = AgentSFTCollator(processor, tools=tool_schemas(prompt) or ())
    trainer = SFTTrainer(model=model, args=args, data_collator=collator, train_dataset=dataset,
                         processing_class=processor, peft_config=peft_config)
    resume = last_checkpoint(out)
    if resume is not None:
        log.info("resuming stage %d from %s", config.stage, resume)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    trained = trainer.model.merge_and_unload() if config.lora else trainer.model
    trained.config.use_cache = True  # training switched it off; generation wants it
    return save_model(trained, processor, out, source=source)
