"""The pointer curriculum: rows whose answers are labels the row shows, first-turn rows as the agent renders its
first turn, the exact-match criterion, the see stage's frame classifier, and a real two-process (gloo) run of every
kind of stage that resumes from its last finished stage."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from medscope.agent.backends.base import message_text
from medscope.agent.loop import AgentConfig
from medscope.agent.protocol import first_user_message, format_seconds
from medscope.suite.records import Sample, Trajectory, write_jsonl
from medscope.suite.trajectories import vcot_trajectory
from medscope.train.curriculum import (
    NOTHING,
    TRACE,
    CurriculumConfig,
    Stage,
    _Video,
    backward,
    exact_match,
    first_row,
    listed,
    load_videos,
    look_row,
    main,
    pointer_row,
    see_frames,
    turn_rows,
)
from medscope.train.data import UNTRAINED, system_message, trajectory_messages
from medscope.train.see import FrameHead
from medscope.video.source import VideoSource
from medscope.video.synthclin import SynthClinVideo
from medscope.video.tools import VideoTools

_STAMP = re.compile(r"\[([0-9.]+)s\]( [a-z ]+)?")


def _video() -> _Video:
    times = [i * 0.5 for i in range(240)]
    return _Video(times, [Image.new("RGB", (32, 32))] * len(times),
                  [("bleeding", 30.0, 33.5), ("smoke", 80.0, 82.0), ("bleeding", 40.0, 41.5)],  # bleeding recurs
                  [("preparation phase", 0.0, 20.0), ("dissection phase", 20.0, 120.0)])


@pytest.mark.parametrize("images", [False, True])
def test_pointer_answers_are_the_labels_around_what_shows_it(images: bool) -> None:
    video, rng, checked = _video(), random.Random(0), 0
    while checked < 200:
        row = pointer_row(video, 8, rng, (0.5, 4.0), images=images, hint=0.5)
        if row is None:
            continue
        checked += 1
        user, answer = message_text(row[0]), message_text(row[1])
        question = re.search(r"When does (?:the )?(.+?) (?:happen|take place)\?", user)
        assert question and user.index("Question:") < user.index("[")  # the question comes before the list
        label = question.group(1)
        spans = [(s, e) for x, s, e in [*video.events, *video.phases] if x == label]
        stamps = [(float(t), (word or "").strip()) for t, word in _STAMP.findall(user)]
        times = [t for t, _ in stamps]
        assert 2 <= len(times) <= 8 and times == sorted(times)
        hits = [t for t in times if any(s <= t < e for s, e in spans)]  # every time it happens counts
        lo, hi = (float(x) for x in re.fullmatch(r"<answer>\[([0-9.]+), ([0-9.]+)\]</answer>", answer).groups())
        # From the first label that shows it to the label after the last: never [t, t], which no tool accepts.
        assert lo == hits[0] and hi == min(t for t in times if t > hits[-1])
        assert all(t in hits for t in times if lo <= t < hi)  # one window: no other time it happens in the row
        if not images:  # the text stage names what each label shows
            assert all(word == (label if t in hits else NOTHING) for t, word in stamps)
        assert len(row[0]["content"]) == 1 + len(times) * (2 if images else 1)


@pytest.mark.parametrize("images", [False, True])
def test_absent_rows_ask_for_an_event_no_frame_shows(images: bool) -> None:
    video, rng, answers = _video(), random.Random(3), []
    while len(answers) < 200:
        row = pointer_row(video, 8, rng, (0.5, 4.0), images=images, hint=0.5, absent=0.5)
        if row is None:
            continue
        user, answer = message_text(row[0]), message_text(row[1])
        answers.append(answer)
        if answer != f"<answer>{NOTHING}</answer>":
            continue
        label = re.search(r"When does (.+?) happen\?", user).group(1)
        times = [float(t) for t, _ in _STAMP.findall(user)]
        assert len(times) >= 2 and not any(e == label and s <= t < f for t in times for e, s, f in video.events)
        assert all((word or "").strip() in ("", NOTHING) for _, word in _STAMP.findall(user))
    assert 60 < answers.count(f"<answer>{NOTHING}</answer>") < 140  # about half of the rows


def test_pointer_rows_that_show_only_a_trace_point_before_it() -> None:
    """With traces, a row whose frames miss the event but show its trace answers from the label before the first
    trace frame to that frame (the teacher's crop), names those frames "<event> trace" in words, and an absent
    row shows neither the event nor its trace; a frame shows the latest trace it lies in."""
    base = _video()
    traces = [("bleeding", 33.5, 40.0), ("smoke", 82.0, 110.0), ("bleeding", 41.5, 70.0)]
    video = _Video(base.times, base.images, base.events, base.phases, traces=traces)
    assert video.shows(35.0) == f"bleeding {TRACE}" and video.shows(31.0) == "bleeding"
    assert video.shows(90.0) == f"smoke {TRACE}" and video.shows(115.0) == NOTHING
    rng, kinds = random.Random(4), {"event": 0, "trace": 0, "absent": 0}
    while min(kinds.values()) < 30:
        row = pointer_row(video, 8, rng, (0.5, 6.0), images=False, hint=0.0, absent=0.3)
        if row is None:
            continue
        user, answer = message_text(row[0]), message_text(row[1])
        label = re.search(r"When does (?:the )?(.+?) (?:happen|take place)\?", user).group(1)
        stamps = [(float(t), (word or "").strip()) for t, word in _STAMP.findall(user)]
        times = [t for t, _ in stamps]
        shown = [t for t in times if any(x == label and s <= t < e for x, s, e in video.events)]
        marked = [t for t in times if any(x == label and s <= t < e for x, s, e in traces)]
        if answer == f"<answer>{NOTHING}</answer>":
            kinds["absent"] += 1
            assert not shown and not marked
            continue
        lo, hi = (float(x) for x in re.fullmatch(r"<answer>\[([0-9.]+), ([0-9.]+)\]</answer>", answer).groups())
        if shown or "phase" in label:
            kinds["event"] += 1 if shown else 0
            continue
        kinds["trace"] += 1
        assert marked and hi == marked[0] and lo == max(t for t in times if t < marked[0])
        event = next((s, e) for x, s, e in video.events if x == label and s < hi and e <= hi and e > lo)
        assert lo < event[1] and event[0] < hi  # the window holds (part of) the event
        assert all(word == (f"{label} {TRACE}" if t in marked else NOTHING) for t, word in stamps)


def test_look_rows_name_the_event_and_the_phase() -> None:
    video, rng = _video(), random.Random(1)
    answers = {message_text(look_row(video, rng)[1]) for _ in range(200)}
    assert "<answer>bleeding; dissection phase</answer>" in answers
    assert f"<answer>{NOTHING}; preparation phase</answer>" in answers


def test_see_frames_are_labelled_as_look_rows_name_them() -> None:
    video = _video()
    frames = see_frames([video], random.Random(1), 400)
    events = [event for _, event, _ in frames]
    assert 100 < sum(event == "bleeding" or event == "smoke" for event in events) < 300  # half of them events
    assert {phase for _, _, phase in frames} == {"preparation phase", "dissection phase"}


@pytest.mark.usefixtures("one_torch_thread")
def test_the_see_head_teaches_the_vision_tower_alone(tmp_path: Path) -> None:
    """A real vision tower learns to tell frames apart by what they show; the language model is not touched."""
    from transformers import AutoModelForImageTextToText

    from medscope.train import tiny

    processor = _processor("[12.5s] nothing")
    tiny.save_tiny(tiny.build_tiny_model("qwen3_vl", processor.tokenizer, hidden_size=32, layers=1, vision_hidden=16),
                   processor, tmp_path)
    model = AutoModelForImageTextToText.from_pretrained(tmp_path, local_files_only=True)
    torch.manual_seed(0)
    head = FrameHead(model, [NOTHING, "bleeding"], ["preparation phase", "dissection phase"])
    plain, blot = Image.new("RGB", (64, 48), (200, 140, 120)), Image.new("RGB", (64, 48), (200, 140, 120))
    blot.paste((150, 0, 0), (8, 8, 40, 40))
    frames = [(plain, NOTHING, "preparation phase"), (blot, "bleeding", "preparation phase"),
              (plain, NOTHING, "dissection phase"), (blot, "bleeding", "dissection phase")]
    # Trained on the first two (one phase), it tells the event apart and calls every frame that phase.
    text_before = {n: p.detach().clone() for n, p in model.named_parameters() if "visual" not in n}
    visual_before = {n: p.detach().clone() for n, p in model.named_parameters() if "visual" in n}
    optimizer = torch.optim.AdamW(list(model.parameters()) + head.parameters(), lr=1e-2)
    first = head.loss(model, processor, frames[:2]).item()
    for _ in range(30):
        head.loss(model, processor, frames[:2]).backward()
        optimizer.step()
        optimizer.zero_grad()
    assert head.loss(model, processor, frames[:2]).item() < first / 4
    assert head.right(model, processor, frames[:2]) == [True, True]
    assert head.right(model, processor, frames) == [True, True, False, False]
    assert all(torch.equal(p, text_before[n]) for n, p in model.named_parameters() if "visual" not in n)
    assert any(not torch.equal(p, visual_before[n]) for n, p in model.named_parameters() if "visual" in n)


def test_exact_match_needs_every_answer_token() -> None:
    labels = torch.tensor([[-100, -100, 5, 6], [-100, -100, 5, 6]])
    logits = torch.zeros(2, 4, 10)
    logits[0, 1, 5] = logits[0, 2, 6] = 1.0  # row 0 predicts both answer tokens
    logits[1, 1, 5] = logits[1, 2, 7] = 1.0  # row 1 misses the second
    assert exact_match(logits, labels) == [True, False]


class _Says:
    """A model and processor that decode to fixed texts, one per row: what ``listed`` reads."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = iter(texts)
        self.tokenizer = self

    def eval(self) -> None:
        pass

    def apply_chat_template(self, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.zeros(1, 1, dtype=torch.long)}

    def generate(self, input_ids: torch.Tensor, **kwargs: object) -> torch.Tensor:
        return torch.zeros(1, 2, dtype=torch.long)

    def decode(self, *args: object, **kwargs: object) -> str:
        return next(self.texts)


def test_listed_wants_a_window_between_labels_of_the_row() -> None:
    video, rng = _video(), random.Random(2)
    row = None
    while row is None:
        row = pointer_row(video, 8, rng, (0.5, 4.0), images=False, hint=0.0)
    times = [float(t) for t, _ in _STAMP.findall(message_text(row[0]))]
    a, b = f"{times[1]:.1f}", f"{times[3]:.1f}"
    texts = [f"<answer>[{a}, {b}]</answer>",  # a window between two labels: listed
             f"<answer>[{a}, {a}]</answer>",  # ends where it starts: a tool error in an episode
             f"<answer>[{b}, {a}]</answer>",  # backwards
             f"<answer>[{a}, {times[3] + 0.25}]</answer>"]  # a time no frame has
    said = _Says(texts)
    assert [listed(said, said, [row]) for _ in texts] == [1.0, 0.0, 0.0, 0.0]
    none = None
    while none is None or message_text(none[1]) != f"<answer>{NOTHING}</answer>":
        none = pointer_row(video, 8, rng, (0.5, 4.0), images=False, hint=0.0, absent=1.0)
    said = _Says([f"<answer>{NOTHING}</answer>", f"<answer>[{a}, {b}]</answer>"])
    assert [listed(said, said, [none]) for _ in range(2)] == [1.0, 0.0]  # where nothing shows it, it must say so


def _teacher_trajectory(synth_video: SynthClinVideo) -> Trajectory:
    """The teacher's real episode on a grounding question about the video's first event."""
    event = json.loads(synth_video.annotation_path.read_text())["events"][0]
    with VideoSource(synth_video.video_path) as source:
        sample = Sample(id="synth/0", video=str(synth_video.video_path), duration=source.duration_seconds,
                        question=f"When does {event['label'].replace('_', ' ')} happen? Answer with the time "
                                 "window(s) in seconds.", answer=f"[{event['start']}, {event['end']}]",
                        task="grounding", evidence=[[event["start"], event["end"]]], source="synthclin")
        return vcot_trajectory(sample, source)


def _processor(words: str) -> object:
    from medscope.train import tiny

    tok = tiny.build_tokenizer([words] * 20, vocab_size=300, chat_template=tiny.load_chat_template("qwen3_vl"))
    return tiny.build_processor("qwen3_vl", tok, max_pixels=64 * 48)


def test_first_rows_show_the_first_turn_as_the_agent_renders_it(synth_video: SynthClinVideo, tmp_path: Path) -> None:
    trajectory = _teacher_trajectory(synth_video)
    shutil.copy(synth_video.video_path, tmp_path / synth_video.video_path.name)
    shutil.copy(synth_video.annotation_path, tmp_path / synth_video.annotation_path.name)
    (video,) = load_videos(tmp_path, _processor("[12.5s] nothing"))
    user, assistant = first_row(trajectory, video)
    with VideoSource(synth_video.video_path) as source:
        overview = VideoTools(source).overview()
        agent = first_user_message(trajectory.sample.question, overview, duration=source.duration_seconds)
    assert overview.timestamps == trajectory.overview and len(trajectory.overview) == 16
    texts = [[p["text"] for p in m["content"] if p["type"] == "text"] for m in (user, agent)]
    assert texts[0] == texts[1] and format_seconds(trajectory.overview[3]) in texts[0]  # the agent's words, labels
    images = [p["image"] for p in user["content"] if p["type"] == "image"]
    assert images == [video.images[video.times.index(t)] for t in trajectory.overview]  # the frames at the labels
    assert message_text(assistant) == trajectory.turns[0]["text"] and "<tool_call>" in message_text(assistant)
    # Rows come from each file's trajectories on the videos given; a file with none on them is left out.
    write_jsonl(tmp_path / "a.jsonl", [trajectory, trajectory])
    other = dataclasses.replace(trajectory, sample=dataclasses.replace(trajectory.sample, video="elsewhere.mp4"))
    write_jsonl(tmp_path / "b.jsonl", [other])
    rows = turn_rows([str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")], [video])
    assert len(rows) == 1 and len(rows[0]) == 2 and message_text(rows[0][0][1]) == trajectory.turns[0]["text"]
    # With the model's system turn, a row opens exactly as its episode's conversation does.
    system = system_message(AgentConfig(), "short")
    with VideoSource(synth_video.video_path) as source:
        episode = trajectory_messages(trajectory, source, AgentConfig(), prompt="short")
    row = turn_rows([str(tmp_path / "a.jsonl")], [video], system)[0][0]
    assert [m["role"] for m in row] == ["system", "user", "assistant"] and row[0] == episode[0]
    assert message_text(row[0]).startswith("Answer the question about the video.")
    assert [message_text(m) for m in row[1:]] == [message_text(m) for m in episode[1:3]]


def test_later_rows_are_the_episode_up_to_each_later_turn(synth_video: SynthClinVideo, tmp_path: Path) -> None:
    trajectory = _teacher_trajectory(synth_video)
    assert len(trajectory.turns) >= 2  # a crop, then the answer: a later turn at least
    shutil.copy(synth_video.video_path, tmp_path / synth_video.video_path.name)
    shutil.copy(synth_video.annotation_path, tmp_path / synth_video.annotation_path.name)
    (video,) = load_videos(tmp_path, _processor("[12.5s] nothing"))
    write_jsonl(tmp_path / "a.jsonl", [trajectory])
    system = system_message(AgentConfig(), "short")
    rows = turn_rows([str(tmp_path / "a.jsonl")], [video], system, later=True)[0]
    with VideoSource(synth_video.video_path) as source:
        episode = trajectory_messages(trajectory, source, AgentConfig(), prompt="short")
    assert len(rows) == len(trajectory.turns) - 1
    for k, row in enumerate(rows, start=1):
        # The agent's conversation to the policy's k-th later turn: the same words, the tools' frames at the labels.
        assert [m["role"] for m in row] == [m["role"] for m in episode[:len(row)]] and row[-1]["role"] == "assistant"
        assert [message_text(m) for m in row] == [message_text(m) for m in episode[:len(row)]]
        assert message_text(row[-1]) == trajectory.turns[k]["text"]
        # Only the last turn is trained; the ones before it are context.
        assert [bool(m.get(UNTRAINED)) for m in row if m["role"] == "assistant"] == [True] * k + [False]
        shown = [trajectory.overview, *(turn["observation"]["timestamps"] for turn in trajectory.turns[:k])]
        views = [m for m in row if m["role"] in ("user", "tool")]
        assert len(views) == len(shown)
        for message, times in zip(views, shown, strict=True):
            images = [p["image"] for p in message["content"] if p["type"] == "image"]
            assert images == [video.images[video.times.index(t)] for t in times]
    seen = trajectory.turns[0]["observation"]["timestamps"]
    assert format_seconds(seen[0]) in message_text(rows[0][-2]) and rows[0][-2]["role"] == "tool"
    # A policy that answers at once (the fair baseline's) gives its one turn.
    single = dataclasses.replace(trajectory, turns=[{"text": "<answer>[1.0, 2.0]</answer>", "observation": None}])
    write_jsonl(tmp_path / "b.jsonl", [single])
    (only,) = turn_rows([str(tmp_path / "b.jsonl")], [video], later=True)[0]
    assert [m["role"] for m in only] == ["user", "assistant"] and not only[-1].get(UNTRAINED)


def test_rows_one_at_a_time_give_the_batch_gradient(synth_video: SynthClinVideo, tmp_path: Path) -> None:
    """Episode rows of different lengths (a batch pads them and masks attention), through a real tiny Qwen3-VL:
    one forward and backward per row gives the batch's loss and gradient."""
    from transformers import AutoModelForImageTextToText

    from medscope.train import tiny
    from medscope.train.data import to_row
    from medscope.train.sft import AgentSFTCollator

    trajectory = _teacher_trajectory(synth_video)
    shutil.copy(synth_video.video_path, tmp_path / synth_video.video_path.name)
    shutil.copy(synth_video.annotation_path, tmp_path / synth_video.annotation_path.name)
    processor = _processor("[12.5s] nothing")
    (video,) = load_videos(tmp_path, processor)
    write_jsonl(tmp_path / "a.jsonl", [trajectory])
    episodes = [str(tmp_path / "a.jsonl")]
    rows = [to_row(row) for later in (False, True) for row in turn_rows(episodes, [video], later=later)[0]]
    collate = AgentSFTCollator(processor, tools=())
    assert len({collate([row])["input_ids"].shape[1] for row in rows}) > 1  # the batch pads
    tiny.save_tiny(tiny.build_tiny_model("qwen3_vl", processor.tokenizer, hidden_size=32, layers=1, vision_hidden=16),
                   processor, tmp_path / "model")
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "model", local_files_only=True)
    runs = []
    for one in (False, True):
        model.zero_grad()
        loss = backward(model, collate, rows, one_at_a_time=one)
        runs.append((loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])))
    (batched, batched_grad), (single, single_grad) = runs
    assert single == pytest.approx(batched, rel=1e-5)
    assert batched_grad.abs().sum() > 0
    assert torch.allclose(single_grad, batched_grad, rtol=1e-3, atol=1e-6)


def test_a_first_stage_without_trajectories_is_refused(tmp_path: Path) -> None:
    config = CurriculumConfig(videos=str(tmp_path), model=str(tmp_path), out=str(tmp_path / "out"))
    with pytest.raises(ValueError, match="--trajectories"):
        main(config, (Stage("first", 16, 2),))


@pytest.mark.usefixtures("one_torch_thread")
def test_two_processes_run_every_stage_and_resume(synth_video: SynthClinVideo, tmp_path: Path) -> None:
    from medscope.train import tiny

    videos = tmp_path / "videos"
    videos.mkdir()
    for path in (synth_video.video_path, synth_video.annotation_path):
        shutil.copy(path, videos / path.name)
    shutil.copy(synth_video.annotation_path, videos / "copy.json")  # two videos: one is set aside for the criterion
    write_jsonl(tmp_path / "trajectories.jsonl", [_teacher_trajectory(synth_video)])
    tok = tiny.build_tokenizer(["When does bleeding happen? [12.5s] nothing <answer>[1.0, 2.0]</answer>"] * 20,
                               vocab_size=400, chat_template=tiny.load_chat_template("qwen3_vl"))
    tiny.save_tiny(tiny.build_tiny_model("qwen3_vl", tok, hidden_size=32, layers=1, vision_hidden=16),
                   tiny.build_processor("qwen3_vl", tok, max_pixels=64 * 48), tmp_path / "init")
    stages = (Stage("copy", 4, 3), Stage("see", 4, 2, criterion=1.01), Stage("look", 1, 2),
              Stage("point", 4, 3, hint_fade=2), Stage("first", 16, 2), Stage("then", 8, 2))
    config = CurriculumConfig(videos=str(videos), model=str(tmp_path / "init"), out=str(tmp_path / "out"),
                              trajectories=(str(tmp_path / "trajectories.jsonl"),), batch_size=4, processes=2,
                              check_every=2, check_rows=4)
    report = main(config, stages[:2])
    assert [s["name"] for s in report["stages"]] == ["0-copy4", "1-see4"]
    assert [c["step"] for c in report["stages"][0]["curve"]] == [2, 3]  # checked every 2 steps and at the end
    assert [c["step"] for c in report["stages"][1]["curve"]] == [2]  # the see stage is checked like the others
    before = (tmp_path / "out" / "stages" / "1-see4" / "model.safetensors").stat().st_mtime_ns
    # The first two are done: only the others run, from the second's model (in this process: resuming does not
    # depend on how the stages before ran).
    report = main(dataclasses.replace(config, processes=1, batch_size=2, threads=2), stages)
    assert torch.get_num_threads() == 1  # its two threads were its own: the caller keeps its one
    assert [s["name"] for s in report["stages"]] == ["0-copy4", "1-see4", "2-look1", "3-point4", "4-first16",
                                                     "5-then8"]
    assert (tmp_path / "out" / "stages" / "1-see4" / "model.safetensors").stat().st_mtime_ns == before
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert 0.0 <= report["stages"][3]["curve"][-1]["listed"] <= 1.0  # pointing is judged on decoded answers
    saved = json.loads((tmp_path / "out" / "curriculum.json").read_text())
    assert len(saved["stages"]) == 6 and report["stages"][4]["steps"] == report["stages"][5]["steps"] == 2


def test_videos_load_alike_in_one_or_two_processes(synth_video: SynthClinVideo, tmp_path: Path) -> None:
    import numpy as np

    for name in ("a", "b"):
        shutil.copy(synth_video.video_path, tmp_path / synth_video.video_path.name)
        shutil.copy(synth_video.annotation_path, tmp_path / f"{name}.json")
    processor = _processor("[12.5s] nothing")
    alone, pooled = load_videos(tmp_path, processor), load_videos(tmp_path, processor, processes=2)
    assert len(alone) == len(pooled) == 2
    for one, two in zip(alone, pooled, strict=True):
        assert (one.times, one.events, one.phases) == (two.times, two.events, two.phases) and one.events
        assert len(one.images) == len(one.times) > 0 and one.images[0].size[0] * one.images[0].size[1] <= 64 * 48
        assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(one.images, two.images, strict=True))


def test_a_traced_video_loads_with_its_marks(tmp_path: Path) -> None:
    """From a SynthClin file with traces to the curriculum's video: each event's mark as (label, end, trace_end),
    and the frames in it named '<event> trace' (the look and see stages' label); the untraced fixture has none."""
    from medscope.video.synthclin import SynthClinConfig, generate

    made = generate(SynthClinConfig(duration_seconds=60.0, fps=2.0, keyframe_seconds=0.5, events_per_10min=30.0,
                                    seed=2, trace_seconds=10.0, distinct_events=True), tmp_path)
    (video,) = load_videos(tmp_path, _processor("[12.5s] nothing"))
    events = made.annotation["events"]
    assert video.traces == [(e["label"].replace("_", " "), e["end"], e["trace_end"]) for e in events]
    for label, start, end in video.traces:
        inside = [t for t in video.times if start <= t < end and not any(s <= t < e for _, s, e in video.events)]
        assert inside and all(video.shows(t) == f"{label} {TRACE}" for t in inside)
    plain = [t for t in video.times if not any(s <= t < e for _, s, e in [*video.events, *video.traces])]
    assert plain and all(video.shows(t) == NOTHING for t in plain)
