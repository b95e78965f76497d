"""The shipped model folder: the inference files of a trained checkpoint plus a model card that says exactly
how it was made (command, preset, data, every stage's wall time and training curve) and what it scores.

``medscope train all`` writes it as its last stage; ``medscope/models/medscope-tiny`` is a copy of it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from medscope.io import atomic_path, write_text_atomic
from medscope.models import BUILTIN_MODEL

# What from_pretrained and the processor need; trainer state, optimizer and checkpoints stay behind.
INFERENCE_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                   "tokenizer_config.json", "chat_template.jinja", "processor_config.json",
                   "preprocessor_config.json", "video_preprocessor_config.json")


def cpu_description() -> str:
    """The CPU the wall times were measured on: its model, cores and the vector kernels torch picked. The same
    recipe's first curriculum stage took 0.09 s a step on one 2-core machine and 0.20 s on another (AVX2 only)."""
    import torch

    names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")] if Path("/proc/cpuinfo").is_file() else []
    kernels = torch.backends.cpu.get_cpu_capability()
    return f"{names[0] if names else 'CPU'}, {os.cpu_count()} cores, torch kernels {kernels}"


def log_history(stage: Path) -> list[dict[str, Any]]:
    """The trainer's log of a finished stage folder: its own trainer_state.json, else its last checkpoint's."""
    state = stage / "trainer_state.json"
    if not state.is_file():
        checkpoints = sorted(stage.glob("checkpoint-*/trainer_state.json"),
                             key=lambda p: int(p.parent.name.split("-")[1]))
        if not checkpoints:
            return []
        state = checkpoints[-1]
    return list(json.loads(state.read_text())["log_history"])


def curve(history: list[dict[str, Any]], key: str, window: int = 10) -> tuple[float, float] | None:
    """Mean of ``key`` over the first and the last ``window`` logged steps."""
    values = [float(h[key]) for h in history if key in h]
    if not values:
        return None
    head, tail = values[:window], values[-window:]
    return sum(head) / len(head), sum(tail) / len(tail)


def stage_line(run: Path, name: str, keys: tuple[str, ...]) -> str:
    folder = run / name
    seconds = (folder / "DONE").read_text().strip() if (folder / "DONE").is_file() else "?"
    history = log_history(folder)
    steps = max((int(h.get("step", 0)) for h in history), default=0)
    parts = [f"`{name}`: {float(seconds):.0f} s" if seconds != "?" else f"`{name}`", f"{steps} optimizer steps"]
    for key in keys:
        span = curve(history, key)
        if span is not None:
            parts.append(f"{key} {span[0]:.3g} → {span[1]:.3g}")
    return "  - " + ", ".join(parts)


def prompt_note(settings: dict[str, Any]) -> str:
    """How to prompt a model trained with the short system prompt (its config says so; a server is not told)."""
    if settings["model"].get("prompt", "full") == "full":
        return ""
    return ("\n\nIt was trained with the short system prompt (`\"medscope_prompt\": \"short\"` in `config.json`):"
            " medscope's HF backend reads it there; served by vLLM, give `--backend openai --prompt short`.")


def curriculum_lines(run: Path) -> str:
    """One line per curriculum stage: steps, wall time and what it reached on videos set aside (exact match; for
    pointing also ``listed``, the share of decoded answers that are proper windows between labels of the row)."""
    record = run / "curriculum" / "curriculum.json"
    if not record.is_file():
        return "  - `curriculum`: no record"
    stages = json.loads(record.read_text())["stages"]
    parts = [f"{s['name']} {s['steps']} steps {s['seconds']:.0f} s exact {s['curve'][-1]['exact']:.2f}"
             + (f" listed {s['curve'][-1]['listed']:.2f}" if "listed" in s["curve"][-1] else "")
             for s in stages if s["curve"]]
    return "  - `curriculum` (on videos set aside: exact match; listed for pointing): " + "; ".join(parts)


def write_model(run: Path, model: Path, out: Path, *, name: str, preset: str, settings: dict[str, Any],
                results_md: str) -> Path:
    """Copy ``model``'s inference files to ``out`` and write its model card (README.md); atomic per file."""
    out.mkdir(parents=True, exist_ok=True)
    for file in INFERENCE_FILES:
        if (model / file).is_file():
            with atomic_path(out / file) as tmp:
                shutil.copyfile(model / file, tmp)
    from medscope.train.curves import plot_curves

    plot_curves(run, out / "curves.png")
    config = json.loads((model / "config.json").read_text())
    from safetensors.numpy import load_file

    params = sum(int(array.size) for array in load_file(model / "model.safetensors").values())
    funnel = json.loads((run / "suite_train" / "funnel.json").read_text())["samples"]["total"]
    held_out = sum(1 for _ in (run / "suite_eval" / "samples.jsonl").open())
    sft = ("loss", "mean_token_accuracy")
    grpo = ("reward", "rewards/accuracy/mean", "rewards/format/mean", "rewards/crop/mean", "rewards/frame/mean")
    default = (" Shipped as medscope's built-in model, the default of `medscope ask` and `make demo`."
               if name == BUILTIN_MODEL else "")
    card = f"""# {name}

A {params / 1e6:.2f} M-parameter vision-language model of the **{config.get("model_type", "?")}** architecture
(transformers), trained from random weights on a CPU ({cpu_description()}) by

    medscope train all --preset {preset} --out {run}

It speaks medscope's agent protocol (`<think>`, `<tool_call>` to `crop_video` / `get_frame`, `<answer>` with the
evidence window).{default} **It is a demonstration of the
recipe, not a clinical model**: it knows only SynthClin, medscope's synthetic procedure videos, and the
ClinVideoSuite question templates (e.g. "When does bleeding happen? Answer with the time window in seconds.").

## How it was made

- Data: SynthClin videos generated from seeds (train and held-out videos never share a seed), preset
  `{preset}`: `{json.dumps(settings["videos"])}`. ClinVideoSuite on the training videos (templates
  `{", ".join(settings["suite"]["templates"])}`): {funnel["generated"]} samples generated, {funnel["kept"]} kept by
  the filters; each kept sample has a reference trajectory from the teacher policy, whose every step follows from
  frames already seen: a crop from the first overview frame that shows the evidence to the next frame (or the
  phase the question implies, where the overview places it) → closer crops the same way → the answer window,
  from the first frame that shows it to the next one.
- Tokenizer: byte-level BPE, digits split one by one, trained offline on the suite's text and the protocol
  (vocab {settings["model"]["vocab_size"]}); model `{json.dumps(settings["model"])}`.
- Stages (wall time on that CPU, threads and processes as in the stage settings below; training curves as mean
  of the first → last 10 logged steps). The curriculum teaches copying timestamp labels, then seeing, then
  pointing over frames; its last stages, `first` and `then`, the first and the later turns of the training episodes
  of both the teacher and the baseline's uniform policy, as often, so the agent and the fair baseline go on from one
  checkpoint:
{curriculum_lines(run)}
{stage_line(run, "sft", sft)}
{stage_line(run, "grpo", grpo)}
- Training curves (`curves.png`): the curriculum's criterion on videos set aside, the SFT loss of the agent
  and of the fair baseline, the GA-GRPO answer and crop rewards of the full run and its ablations.

![training curves](curves.png)

- Stage settings: `{json.dumps({k: settings[k] for k in ("curriculum", "sft", "grpo")})}`
- This folder is the GA-GRPO checkpoint (`{model.name}`), inference files only.

## Scores

Held-out SynthClin samples ({held_out} from the held-out videos), one run, greedy decoding under the protocol
grammar (constrained decoding, `--grammar`: every model, baseline included, writes well-formed turns, every time in
the video and every range ending after it starts, and chooses their content); mean ± standard error
(clustered by video: a video's questions share its frames), in percent. Grounding mIoU and R@0.5 on grounding
questions; GVQA: grounded VQA accuracy and evidence mIoU; frames viewed per question. The **uniform baseline** is
the fair one: the same architecture, from the same curriculum checkpoint, trained on the same samples for as many
epochs to answer from uniform frames without tools, evaluated at 1× and 4× the frames the teacher's episodes view.
The ablations are GA-GRPO without the evidence reward and with plain IoU instead of the crop bonus. Reference rows
know the truth or see perfectly: the teacher (it wrote the training trajectories), the oracle, and the uniform
policy with perfect perception (what uniform frames can show at all). "Distinct first turns" counts the different
opening turns over the questions: a model that writes the same search for every question and video has not learnt
to read them.

{results_md}

## Use

    medscope ask VIDEO.mp4 "When does bleeding happen? Answer with the time window in seconds." --report r.html

or `--model PATH` to any folder written by `medscope train`.{prompt_note(settings)}
"""
    write_text_atomic(out / "README.md", card)
    return out

