"""The pointer curriculum: the skills a small model learns late, taught one at a time before the trajectories.

Answering "when?" by looking means copying the timestamp labels of the frames that show something. A
randomly initialised model does not find that skill inside whole agent episodes (held-out grounding stays at
0), but learns it in a few CPU minutes when it comes in steps, each stopped by a measured criterion rather than
a step count (the skill appears at a different point in each run):

1. ``copy``: a question, then timestamp labels with a word saying what each frame shows and no image; the
   answer is the window from the first label that shows it to the label after the last. A text copy, few
   items first. Two kinds of row would break that rule and are drawn again: one whose last item shows the
   answer (no label after it, so the window would have no width), and one where the asked event happens twice
   and the second time is an item outside the window. Both were 3–14% of rows; without them neither copy
   stage met its criterion by its cap, with them the two did in four of six stage runs over three seeds.
2. ``see``: the vision tower alone learns each frame's event and phase, through a linear head thrown away after
   (``medscope.train.see``): perception, where it is cheap to learn.
3. ``look``: one frame → what it shows and the phase, in words (perception, a short warm-up).
4. ``point``: the same question over real frames, whose words fade out over the first steps, few frames
   first. Questions ask for an event (a few seconds) or a phase (its span), as a crop does in an episode; in
   some rows (``absent``) no frame shows the asked event and the answer is "nothing", as an episode's first
   turn must often say. Without them every pointing row had an answer, and the model's first turn never said
   that an overview frame shows the event (0 of 28 validation overviews that do, ranked at AUC 0.54); with
   such rows drawn 15% of the time, 15 of 28 after SFT (3 of 37 wrongly), AUC 0.90. At 30% it said it for 18
   but also said "nothing" for a quarter of the rows where a frame shows it, and pointed worse.
5. ``first``: the first turn of the training episodes: the system prompt the model carries, the question and
   the overview as the agent shows them, then what the policy wrote first (``--trajectories``: the teacher's, and
   the fair baseline's uniform policy's as often, so that both models start from one checkpoint that saw both
   formats equally). Pointing learnt with bare answers did not carry over to the protocol: SFT straight after
   ``point`` wrote a first crop whose start is an overview label in 3 of 203 held-out episodes, the same crop for
   every question of a video; after 300 steps of this stage (teacher rows only), 58 of 86 validation first crops
   started at one.
6. ``then``: the later turns of the same episodes, each row the episode up to one turn after the first (the turns
   before it context, untrained), the fair baseline's one-turn episodes as often (its answer is its only turn).
   The second turn is a pointing row in the protocol: after a crop whose frames show the event, crop from the
   first of them to the label after the last. Pointing learnt in bare rows and a first turn did not carry over to
   it: after SFT, the model's crop after such a crop began at the first frame showing the event in 0 of 19
   validation episodes, and began at a label of that crop in 52 of 123 (it copied the crop before).

Rows are single user turns (question first, then the labelled frames, as ``protocol.first_user_message``
renders them) and a bare ``<answer>[lo, hi]</answer>``: no system prompt, so a row costs tens to hundreds of
tokens, not two thousand. ``first`` and ``then`` rows are the episode exactly as the agent renders it, system prompt
(and, with the full prompt, the tool schemas) included. Trained without the short prompt, then asked behind it,
the stage's model said "no frame shows it yet" to nearly every validation overview (it said one shows the asked
event for 0, 0 and 1 of the 28 that do, over three data seeds); trained with it, for 5, 13 and 17 (and wrongly
for 1, 4 and 14 of 37), as the teacher says it for 28 of 65. Frames come from the training videos only, decoded
once; a tenth of the videos are kept aside to measure the criterion (exact match of every answer token under
teacher forcing, which is what greedy decoding writes; for ``see``, the head's event and phase both right).
Nothing here reads the held-out videos.
"""

from __future__ import annotations

import bisect
import json
import logging
import multiprocessing
import random
import re
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from medscope.agent.backends.base import Message, image_part, message_text, text_part
from medscope.agent.backends.processors import Geometry, fit_image, image_geometry
from medscope.agent.backends.scripted import before_trace, bracket, shows
from medscope.agent.protocol import (
    first_user_message,
    folder_prompt,
    format_seconds,
    format_time,
    observation_message,
    question_text,
    tool_schemas,
)
from medscope.io import write_text_atomic
from medscope.suite.records import Trajectory, read_jsonl
from medscope.train.data import UNTRAINED
from medscope.video.source import Frame, VideoSource
from medscope.video.tools import Observation, ToolConfig

log = logging.getLogger(__name__)

NOTHING = "nothing"
TRACE = "trace"  # what a frame in an event's mark shows: "bleeding trace"
EPISODE_KINDS = ("first", "then")  # stages whose rows are turns of the training episodes


@dataclass(frozen=True)
class Stage:
    kind: str  # copy | see | look | point | first | then
    frames: int  # frames (labels) per row (first, then: the agent's view; each row shows what its episode showed;
    # see: frames per step, each a row of its own)
    max_steps: int
    hint_fade: int = 0  # point: steps over which the words next to the frames fade out (0: no words)
    criterion: float | None = None  # the score that ends the stage, where not the run's (CurriculumConfig.criterion)
    absent: float = 0.0  # point: share of rows where no frame shows the asked event (answer: nothing)


# The stages of the tiny recipe, from the measured diagnosis: few items before many, text before images. The
# caps keep the recipe within the hour on the machines it was made on: at 128x64 frames a first step (half of its
# rows the baseline's 36 uniform frames) took 1.0 s with two threads, a point16 step 0.5 s (at 64x32 frames both
# about half as long: run36), a copy step 0.08-0.12 s, a see step 0.05 s (on an AVX2-only CPU 2-3x as long; a
# then step there 5.7 s batched, its rows now one at a time: 1.4x as fast).
# ``see`` runs to a higher bar than the others: its steps are cheap and every later stage reads what it
# learns. ``then`` (300 steps) took validation grounding mIoU after GA-GRPO from 3.4 to 6.1 (run24 against run23);
# with frames at two tokens the run has time for twice the ``first`` and ``then`` steps, and they took it from 4.7 to
# 8.4 (run37 against run36, the same curriculum before them).
TINY_STAGES: tuple[Stage, ...] = (
    Stage("copy", 4, 2200), Stage("copy", 8, 1500),
    Stage("see", 32, 1500, criterion=0.95), Stage("look", 1, 600),
    Stage("point", 4, 1000, hint_fade=600, absent=0.15), Stage("point", 8, 800, hint_fade=200, absent=0.15),
    Stage("point", 16, 200, absent=0.15),
    Stage("first", 16, 700), Stage("then", 8, 600),
)
# Each kind of stage once, a few steps: checks the code path end to end.
SMOKE_STAGES: tuple[Stage, ...] = (Stage("copy", 4, 2), Stage("see", 4, 2), Stage("look", 1, 2),
                                   Stage("point", 4, 2, hint_fade=1), Stage("first", 16, 2),
                                   Stage("then", 8, 2))
STAGES = {"tiny": TINY_STAGES, "smoke": SMOKE_STAGES}


@dataclass(frozen=True)
class CurriculumConfig:
    videos: str = field(default="", metadata={"help": "folder of training videos with SynthClin-style annotations"})
    model: str = field(default="", metadata={"help": "model folder to start from"})
    trajectories: tuple[str, ...] = field(default=(), metadata={
        "help": "first stages: trajectories.jsonl files on these videos, whose first turns are the rows (each file "
                "as often)"})
    out: str = field(default="", metadata={"help": "output folder: the trained model and curriculum.json"})
    lr: float = field(default=2e-3, metadata={"help": "AdamW learning rate (constant after a short warm-up)"})
    batch_size: int = field(default=8, metadata={"help": "rows per step"})
    criterion: float = field(default=0.8, metadata={"help": "exact match on the aside videos that ends a stage"})
    check_every: int = field(default=50, metadata={"help": "steps between criterion checks"})
    listed_every: int = field(default=200, metadata={"help": "point stages: steps between the decoded checks (48 "
                                                           "generations each, the stage's criterion)"})
    check_rows: int = field(default=48, metadata={"help": "rows of the aside videos per check"})
    # From a fine crop's spacing to an overview's (16 frames over 2-4 minutes): every view an episode points in.
    spacing: tuple[float, float] = field(default=(0.5, 12.0), metadata={"help": "seconds between a row's frames"})
    processes: int = field(default=1, metadata={"help": "data-parallel processes (gloo), each batch_size / "
                                                         "processes rows a step"})
    threads: int = field(default=1, metadata={"help": "torch threads per process (1 is fastest for tiny models)"})
    seed: int = 0

    def __post_init__(self) -> None:
        if self.check_every < 1 or self.listed_every % self.check_every:
            raise ValueError(f"check_every ({self.check_every}) must be >= 1 and listed_every ({self.listed_every}) "
                             "a multiple of it")
        if self.processes < 1 or self.batch_size % self.processes:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of processes ({self.processes})")


@dataclass
class _Video:
    """One annotated video's frames (decoded once) and what each frame shows."""

    times: list[float]
    images: list[Image.Image]
    events: list[tuple[str, float, float]]  # (label, start, end)
    phases: list[tuple[str, float, float]]
    name: str = ""  # the video file's name, as a trajectory's sample names it
    traces: list[tuple[str, float, float]] = field(default_factory=list)  # the events' marks: (label, end, trace_end)

    def shows(self, t: float) -> str:
        """The event the frame at ``t`` shows; else the trace of the latest event whose mark it shows ("bleeding
        trace"); else nothing."""
        event = next((label for label, s, e in self.events if shows(t, (s, e))), None)
        if event is not None:
            return event
        return next((f"{label} {TRACE}" for label, s, e in reversed(self.traces) if s <= t < e), NOTHING)

    def phase(self, t: float) -> str:
        return next((label for label, s, e in self.phases if s <= t < e), self.phases[-1][0])


def _human(label: str) -> str:
    return label.replace("_", " ")


def load_videos(folder: Path, processor: Any, max_pixels: int = ToolConfig().crop_max_pixels,
                processes: int = 1) -> list[_Video]:
    """Every ``*.json`` annotation in ``folder`` with its video, all frames decoded as ``crop_video`` decodes them
    (``max_pixels``) and resized as ``processor`` will resize them (done once here, not at every step), in
    ``processes`` processes (decoding is single-threaded: the tiny recipe's 300 videos take two minutes in two
    processes on an AVX-512 CPU)."""
    size = image_geometry(processor)
    if size is None:
        raise ValueError(f"{type(processor).__name__} does not say how it resizes images: the curriculum needs a "
                         "Qwen-VL processor")
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise ValueError(f"no annotated videos (*.json beside *.mp4) in {folder}")
    if processes <= 1:
        return [_video(*_decode(path, max_pixels, size)) for path in paths]
    context = multiprocessing.get_context("spawn")  # a forked torch is not safe
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        return [_video(*decoded) for decoded in pool.map(_decode, paths, [max_pixels] * len(paths),
                                                         [size] * len(paths), chunksize=4)]


def _decode(path: Path, max_pixels: int, size: Geometry) -> tuple[Any, ...]:
    """One video's frame times, frames as one uint8 array (it crosses processes much faster than PIL images),
    events, phases and file name; ``size`` is the processor's (patch factor, min pixels, max pixels)."""
    import numpy as np

    annotation = json.loads(path.read_text())
    with VideoSource(path.parent / annotation["video"]) as source:
        frames = source.frames_at_indices(range(source.num_frames), max_pixels=max_pixels)
    pixels = np.stack([np.asarray(fit_image(f.image, size)) for f in frames])
    return ([f.pts_seconds for f in frames], pixels,
            [(_human(e["label"]), e["start"], e["end"]) for e in annotation["events"]],
            [(f"{_human(p['label'])} phase", p["start"], p["end"]) for p in annotation["phases"]],
            Path(annotation["video"]).name,
            [(_human(e["label"]), e["end"], e["trace_end"]) for e in annotation["events"] if "trace_end" in e])


def _video(times: list[float], pixels: Any, events: list[Any], phases: list[Any], name: str,
           traces: list[Any]) -> _Video:
    return _Video(times, [Image.fromarray(frame) for frame in pixels], events, phases, name, traces)


_PLACEMENTS = 8


def pointer_row(video: _Video, n: int, rng: random.Random, spacing: tuple[float, float], *,
                images: bool, hint: float, absent: float = 0.0) -> list[Message] | None:
    """``n`` frames, uniformly spread over a window that holds an event or a phase; the answer is the window
    from the first label that shows it to the label after the last. Where the event leaves a trace and no frame
    shows the event but some show its trace, the answer is the window from the label before the first of those
    to it (``before_trace``, as the teacher crops). With probability ``absent`` the window is anywhere and the
    asked event must show in none of its frames, nor its trace: the answer is ``nothing``. None when the draw
    fails (draw again)."""
    missing = bool(video.events) and rng.random() < absent
    if missing or (video.events and rng.random() < 0.7):
        label, start, end = rng.choice(video.events)
        question = f"When does {label} happen? Answer with the time window(s) in seconds."
    else:
        label, start, end = rng.choice(video.phases)
        question = f"When does the {label} take place? Answer with the time window(s) in seconds."
    # Every time the event happens counts. A row asks for one of them; a frame of another would show the asked
    # event outside the answer (14% of 16-frame event rows), so such a placement is drawn again, as the suite asks
    # a recurring label once with all its windows.
    spans = [(s, e) for name, s, e in video.events if name == label] or [(start, end)]  # a phase: its one span
    # Its marks: a row may show the trace of the drawn event only (another's would point elsewhere).
    marked = [(s, e) for name, s, e in video.traces if name == label]
    own = [(s, e) for s, e in marked if s == end]
    duration = video.times[-1]
    for _ in range(_PLACEMENTS):  # placements of the frames for this question, so the mix of questions holds
        gap = rng.uniform(*spacing)
        width = gap * n
        if missing:  # anywhere; none may show
            lo = rng.uniform(0.0, max(0.0, duration - width))
        else:
            lo = rng.uniform(max(0.0, start - width + gap), min(end, max(0.0, duration - width)))
        picked = sorted({_nearest(video.times, lo + (j + 0.5) * gap) for j in range(n)})
        times = [video.times[i] for i in picked]
        hits = [t for t in times if any(shows(t, span) for span in spans)]
        marks = [t for t in times if any(s <= t < e for s, e in marked)]
        # A window ends at the label after the last frame that shows it; when the last frame shows it there is
        # none, and the answer was [t, t] (a tenth of the rows): an exception to the copy rule, and the window a
        # tool refuses. Without such rows copy4 met its criterion in 2,050 steps where it had not in 2,200.
        if len(times) < 2:
            continue
        if missing and not hits and not marks:
            break
        if not missing and hits and not (hits[-1] == times[-1] or any(not shows(t, (start, end)) for t in hits)):
            break
        # Only the drawn event's trace, after a frame that shows neither: the window before it holds the event.
        if (not missing and not hits and marks and marks[0] != times[0]
                and all(any(s <= t < e for s, e in own) for t in marks)):
            break
    else:
        return None
    parts = [text_part(question_text(question) + "\nFrames:")]
    words = rng.random() < hint
    for index, t in zip(picked, times, strict=True):
        label_text = format_seconds(t)
        if words or not images:
            label_text += f" {label if t in hits else f'{label} {TRACE}' if t in marks else NOTHING}"
        parts.append(text_part(label_text))
        if images:
            parts.append(image_part(video.images[index]))
    if missing:
        answer = f"<answer>{NOTHING}</answer>"
    else:  # what the teacher writes
        bounds = (times[0], times[-1])
        a, b = bracket(times, hits, bounds) if hits else before_trace(times, marks, bounds)
        answer = f"<answer>[{format_time(a)}, {format_time(b)}]</answer>"
    return [{"role": "user", "content": parts}, {"role": "assistant", "content": [text_part(answer)]}]


def _look_at(video: _Video, rng: random.Random) -> int:
    """The index of a frame to name: an event frame half the time (events are rare), else any frame."""
    if video.events and rng.random() < 0.5:
        _, start, end = rng.choice(video.events)
        return _nearest(video.times, rng.uniform(start, end))
    return rng.randrange(len(video.times))


def look_row(video: _Video, rng: random.Random) -> list[Message]:
    """One frame → what it shows and its phase."""
    index = _look_at(video, rng)
    t = video.times[index]
    parts = [text_part(question_text("What does this frame show, and in which phase?")),
             text_part(format_seconds(t)), image_part(video.images[index])]
    answer = f"<answer>{video.shows(t)}; {video.phase(t)}</answer>"
    return [{"role": "user", "content": parts}, {"role": "assistant", "content": [text_part(answer)]}]


def see_frames(videos: Sequence[_Video], rng: random.Random, n: int) -> list[tuple[Image.Image, str, str]]:
    """``n`` frames of a see stage, drawn as ``look_row`` draws its frame: (image, what it shows, its phase)."""
    frames = []
    for _ in range(n):
        video = rng.choice(videos)
        index = _look_at(video, rng)
        frames.append((video.images[index], video.shows(video.times[index]), video.phase(video.times[index])))
    return frames


def episode_messages(trajectory: Trajectory, video: _Video, system: Message | None = None) -> list[Message]:
    """``trajectory``'s whole episode as the agent renders it: the system turn ``system`` (the model's prompt), the
    question and overview (``protocol.first_user_message``), then each of the policy's turns and what its tool
    returned (``protocol.observation_message``), with the frames of ``video`` at the times the trajectory recorded."""
    sample = trajectory.sample

    def frames(times: Sequence[float]) -> tuple[Frame, ...]:
        return tuple(Frame(i, video.times[i], video.images[i]) for i in (_nearest(video.times, t) for t in times))

    overview = Observation("overview", {"duration": sample.duration}, frames(trajectory.overview))
    messages = [*([system] if system else []),
                first_user_message(sample.question, overview, duration=sample.duration, options=sample.options)]
    for turn in trajectory.turns:
        messages.append({"role": "assistant", "content": [text_part(turn["text"])]})
        seen = turn.get("observation")
        if seen:
            result = Observation(seen["tool"], seen["arguments"], frames(seen["timestamps"]))
            messages.append(observation_message(result, sample.question, sample.options))
    return messages


def first_row(trajectory: Trajectory, video: _Video, system: Message | None = None) -> list[Message]:
    """The first turn of ``trajectory``'s episode (``episode_messages`` to the policy's first turn)."""
    return episode_messages(trajectory, video, system)[: 3 if system else 2]


def later_rows(trajectory: Trajectory, video: _Video, system: Message | None = None) -> list[list[Message]]:
    """A row per turn after the first: the episode up to that turn, the turns before it context only (no loss). An
    episode of one turn (a policy that calls no tool, the fair baseline's) gives that turn."""
    messages = episode_messages(trajectory, video, system)
    turns = [i for i, message in enumerate(messages) if message["role"] == "assistant"]
    return [[{**m, UNTRAINED: True} if m["role"] == "assistant" and j < i else m
             for j, m in enumerate(messages[:i + 1])] for i in turns[1:] or turns]


def turn_rows(paths: Sequence[str], videos: Sequence[_Video], system: Message | None = None, *,
              later: bool = False) -> list[list[list[Message]]]:
    """Per trajectories file, the rows of its trajectories on ``videos`` (files with none left out), each opening
    with ``system``: first turns (``first_row``), or with ``later`` the turns after them (``later_rows``)."""
    by_name = {video.name: video for video in videos}
    out = []
    for path in paths:
        rows = []
        for t in read_jsonl(path, "trajectory"):
            video = by_name.get(Path(t.sample.video).name)
            if video is not None and t.overview and t.turns:
                rows += later_rows(t, video, system) if later else [first_row(t, video, system)]
        if rows:
            out.append(rows)
    return out


def _nearest(times: Sequence[float], t: float) -> int:
    i = bisect.bisect_left(times, t)
    if i == 0:
        return 0
    if i == len(times):
        return len(times) - 1
    return i if times[i] - t < t - times[i - 1] else i - 1


def draw(stage: Stage, videos: Sequence[_Video], rng: random.Random, spacing: tuple[float, float],
         step: int, episodes: Sequence[Sequence[list[Message]]] = ()) -> list[Message]:
    """One row of ``stage``; a first or then stage's from ``episodes`` (``turn_rows``), each file as often."""
    if stage.kind in EPISODE_KINDS:
        return rng.choice(rng.choice(episodes))
    while True:
        video = rng.choice(videos)
        if stage.kind == "look":
            return look_row(video, rng)
        hint = max(0.0, 1.0 - step / stage.hint_fade) if stage.hint_fade else 0.0
        row = pointer_row(video, stage.frames, rng, spacing, images=stage.kind == "point", hint=hint,
                          absent=stage.absent)
        if row is not None:
            return row


def exact_match(logits: Any, labels: Any) -> list[bool]:
    """Per row: every labelled token is the argmax of the logits before it (what greedy decoding would write)."""
    predicted = logits[:, :-1].argmax(-1)
    target = labels[:, 1:]
    mask = target != -100
    return [bool(((predicted[r] == target[r]) | ~mask[r]).all()) for r in range(target.shape[0])]


def main(config: CurriculumConfig, stages: Sequence[Stage] = TINY_STAGES) -> dict[str, Any]:
    """Run the stages; writes the model and ``curriculum.json`` (per stage: steps, seconds, criterion curve).

    Each finished stage saves its model under ``out/stages/`` and is recorded in ``curriculum.json``: a killed
    run starts again from the last finished stage. Every stage has its own data seed and a fresh optimizer, so a
    resumed run is the run that was not killed. With ``processes`` > 1 the steps are data-parallel: each process
    draws its own rows and the gradients are averaged (gloo), so the weights stay identical."""
    if not config.videos or not config.model or not config.out:
        raise ValueError("the curriculum needs videos, model and out folders")
    if any(stage.kind in EPISODE_KINDS for stage in stages) and not config.trajectories:
        raise ValueError("'first' and 'then' stages learn the turns of trajectories: give their trajectories.jsonl "
                         "files (--trajectories, from `medscope suite build` on the same videos)")
    Path(config.out).mkdir(parents=True, exist_ok=True)
    if config.processes == 1:
        import torch

        threads = torch.get_num_threads()
        try:
            _train(0, config, tuple(stages), None)
        finally:  # the caller goes on with its own threads: a pipeline worker kept two for the SFT after it,
            torch.set_num_threads(threads)  # three threads on two cores beside the other SFT
    else:
        import torch.multiprocessing

        with socket.socket() as probe:  # a free port for the processes to meet on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        torch.multiprocessing.spawn(_train, args=(config, tuple(stages), port), nprocs=config.processes)
    return dict(json.loads((Path(config.out) / "curriculum.json").read_text()))


def _train(rank: int, config: CurriculumConfig, stages: tuple[Stage, ...], port: int | None) -> None:
    import torch
    import torch.distributed as dist
    from transformers import AutoModelForImageTextToText

    from medscope.agent.backends.processors import load_processor
    from medscope.agent.loop import AgentConfig
    from medscope.train.data import system_message, to_row
    from medscope.train.see import FrameHead
    from medscope.train.sft import AgentSFTCollator, save_model

    torch.set_num_threads(config.threads)
    world = config.processes
    if port is not None:
        if rank == 0:  # a spawned process starts without the caller's logging
            logging.basicConfig(level=logging.INFO, format="%(message)s")
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    source, out = Path(config.model), Path(config.out)
    report: dict[str, Any] = {"config": asdict(config), "stages": []}
    record = out / "curriculum.json"
    if record.is_file():
        done = json.loads(record.read_text())["stages"]
        if [s["name"] for s in done] == [_name(k, s) for k, s in enumerate(stages)][: len(done)]:
            report["stages"] = done
            if done:
                source = out / "stages" / done[-1]["name"]
    processor = load_processor(source)
    model = AutoModelForImageTextToText.from_pretrained(source, local_files_only=True)
    # Each data-parallel process loads the videos itself; alone, it decodes with as many processes as threads.
    videos = load_videos(Path(config.videos), processor, processes=config.threads if world == 1 else 1)
    aside = max(1, len(videos) // 10)  # the criterion is measured on videos never trained on
    train_videos, check_videos = videos[aside:], videos[:aside]
    # Per episode kind, the rows of the training videos and of those set aside; they open as the model's episodes
    # will, with the prompt it carries.
    episodes: dict[str, tuple[list[list[list[Message]]], list[list[list[Message]]]]] = {}
    prompt = folder_prompt(source)
    system = system_message(AgentConfig(), prompt)
    for kind in sorted({stage.kind for stage in stages} & set(EPISODE_KINDS)):
        rows = episodes[kind] = (turn_rows(config.trajectories, train_videos, system, later=kind == "then"),
                                 turn_rows(config.trajectories, check_videos, system, later=kind == "then"))
        if len(rows[0]) < len(config.trajectories) or not rows[1]:
            raise ValueError(f"{', '.join(config.trajectories)}: each needs trajectories on the videos in "
                             f"{config.videos}, some of them on the tenth set aside (the first by name): build them "
                             "from these videos")
    collate = AgentSFTCollator(processor, tools=())
    first_collate = AgentSFTCollator(processor, tools=tool_schemas(prompt) or ())
    rows_per_step = config.batch_size // world
    for number, stage in enumerate(stages):
        name = _name(number, stage)
        if number < len(report["stages"]):
            continue
        torch.manual_seed(config.seed + number)
        rng = random.Random(f"{config.seed}/train/{name}/{rank}")
        check_rng = random.Random(f"{config.seed}/check/{name}")
        see = stage.kind == "see"
        # A see stage's head knows every label of the videos (the same list in every process) and is dropped after.
        head = FrameHead(model, [NOTHING, *sorted({e for v in videos for e, _, _ in v.events}
                                                  | {f"{e} {TRACE}" for v in videos for e, _, _ in v.traces})],
                         sorted({p for v in videos for p, _, _ in v.phases})) if see else None
        stage_rows = episodes.get(stage.kind, ([], []))
        check_messages = [draw(stage, check_videos, check_rng, config.spacing, stage.max_steps, stage_rows[1])
                          for _ in range(config.check_rows)] if rank == 0 and not see else []
        check_frames = see_frames(check_videos, check_rng, config.check_rows) if rank == 0 and see else []
        checks = [to_row(messages) for messages in check_messages]
        stage_collate = first_collate if stage.kind in EPISODE_KINDS else collate
        trained = list(model.parameters()) + (head.parameters() if head else [])
        optimizer = torch.optim.AdamW(trained, lr=config.lr, weight_decay=0.0)
        criterion = config.criterion if stage.criterion is None else stage.criterion
        started, curve, step = time.monotonic(), [], 0
        model.train()
        while step < stage.max_steps:
            for group in optimizer.param_groups:  # a short warm-up: Adam's first steps are large
                group["lr"] = config.lr * min(1.0, (step + 1) / 50)
            if head:
                loss = head.loss(model, processor, see_frames(train_videos, rng, max(1, stage.frames // world)))
                loss.backward()
                loss = loss.detach()
            else:
                drawn = [to_row(draw(stage, train_videos, rng, config.spacing, step, stage_rows[0]))
                         for _ in range(rows_per_step)]
                loss = backward(model, stage_collate, drawn, one_at_a_time=stage.kind in EPISODE_KINDS)
            if world > 1:
                for param in trained:
                    if param.grad is not None:
                        dist.all_reduce(param.grad)
                        param.grad /= world
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            if step % config.check_every == 0 or step == stage.max_steps:
                stop = torch.zeros(1)
                if rank == 0:
                    if head:  # both the event and the phase of a frame
                        model.eval()
                        exact = sum(head.right(model, processor, check_frames)) / len(check_frames)
                    else:
                        # Episode rows one at a time, as they train: without padding, 1.3-1.8x as fast.
                        exact = _check(model, stage_collate, checks,
                                       1 if stage.kind in EPISODE_KINDS else config.batch_size)
                    decode = stage.kind == "point" and (step % config.listed_every == 0 or step == stage.max_steps)
                    point = {"listed": round(listed(model, processor, check_messages), 3)} if decode else {}
                    curve.append({"step": step, "loss": round(loss.item(), 4), "exact": round(exact, 3), **point})
                    log.info("curriculum %s step %d loss %.3f exact %.2f %s", name, step, loss.item(), exact,
                             point or "")
                    # Copying, perceiving and first turns are measured exactly (the whole turn as its policy
                    # wrote it). Pointing over many frames compounds every frame's perception error, so it passes
                    # once the answers are windows between labels of the row (the skill the next stages build on)
                    # and, with faded words, once they are gone.
                    score = point.get("listed", 0.0) if stage.kind == "point" else exact  # 0 between decodes
                    stop[0] = float(score >= criterion and step >= stage.hint_fade)
                    model.train()
                if world > 1:
                    dist.broadcast(stop, 0)
                if stop[0]:
                    break
        if rank == 0:
            model.eval()
            save_model(model, processor, out / "stages" / name, source=source)
            report["stages"].append({"name": name, **asdict(stage), "steps": step,
                                     "seconds": round(time.monotonic() - started, 1), "curve": curve})
            write_text_atomic(record, json.dumps(report, indent=1) + "\n")
    if rank == 0:
        model.eval()
        save_model(model, processor, out, source=source)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def _name(number: int, stage: Stage) -> str:
    return f"{number}-{stage.kind}{stage.frames}"


_WINDOW = re.compile(r"<answer>\[([0-9.]+), ([0-9.]+)\]")


def listed(model: Any, processor: Any, rows: Sequence[Sequence[Message]], max_new_tokens: int = 24) -> float:
    """Share of rows whose greedily decoded answer is a window between two labels the row shows, the end after
    the start (a window that ends where it starts is a tool error in an episode, the slip a half-trained model
    made most)."""
    import torch

    model.eval()
    hits = 0
    with torch.no_grad():
        for row in rows:
            prompt = processor.apply_chat_template([list(row[:-1])], add_generation_prompt=True, tokenize=True,
                                                   return_dict=True, return_tensors="pt")
            output = model.generate(**prompt, max_new_tokens=max_new_tokens, do_sample=False)
            text = processor.tokenizer.decode(output[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
            if NOTHING in message_text(row[-1]):  # no frame shows it: right when it says so
                hits += f"<answer>{NOTHING}</answer>" in text
                continue
            labels = {part["text"].split("]")[0] + "]" for part in row[0]["content"] if part["type"] == "text"}
            match = _WINDOW.search(text)
            if match and all(f"[{x}s]" in labels for x in match.groups()):
                hits += float(match.group(1)) < float(match.group(2))
    return hits / max(1, len(rows))


def backward(model: Any, collate: Any, rows: Sequence[dict[str, Any]], *, one_at_a_time: bool = False) -> Any:
    """Backpropagate the mean loss over the trained tokens of ``rows``; returns it, detached.

    ``one_at_a_time``: each row is a forward and backward of its own, its summed token loss divided by the trained
    tokens of all the rows: the batch's gradient (to float rounding), without padding or an attention mask, so
    attention (most of a step on rows this long, at head size 16) takes its causal path. A ``then`` step was 1.4x
    and a ``first`` step 1.2x as fast (``benchmarks/episode_rows.py``, 2 threads, an AVX2-only CPU); the pointer
    stages' rows (150-350 tokens) were 0.6-0.8x as fast one at a time, so those stay batched."""
    import torch

    if not one_at_a_time:
        loss = model(**collate(rows)).loss
        loss.backward()
        return loss.detach()
    singles = [collate([row]) for row in rows]
    trained = sum(int((single["labels"][:, 1:] != -100).sum()) for single in singles)  # the loss shifts labels
    total = torch.zeros(())
    for single in singles:
        loss = model(**single, num_items_in_batch=trained).loss
        loss.backward()
        total += loss.detach()
    return total


def _check(model: Any, collate: Any, rows: Sequence[dict[str, Any]], batch_size: int) -> float:
    import torch

    model.eval()
    right = []
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            batch = collate(rows[i:i + batch_size])
            labels = batch.pop("labels")
            right += exact_match(model(**batch).logits, labels)
    return sum(right) / max(1, len(right))
