"""The turn-by-turn probe: real trajectories replayed on a PyAV-encoded SynthClin video, scripted policies and a tiny
randomly initialised Qwen3-VL writing the turns."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from medscope.agent.loop import AgentConfig
from medscope.cli import main as cli_main
from medscope.eval.turns import TurnsConfig, overlaps, run, score_turn, table, turn_window
from medscope.suite.build import BuildConfig, build
from medscope.suite.records import read_jsonl
from medscope.video.synthclin import SynthClinVideo
from medscope.video.tools import ToolConfig

CROP = '<think>x</think>\n<tool_call>{"name": "crop_video", "arguments": {"start_time": 10.0, "end_time": 20.0}}' \
       '</tool_call>'
FRAME = '<think>x</think>\n<tool_call>{"name": "get_frame", "arguments": {"timestamp": 31.0}}</tool_call>'


@pytest.fixture(scope="module")
def trajectories(synth_video: SynthClinVideo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("suite")
    build(BuildConfig(source="synthclin", annotations=str(synth_video.annotation_path), out=str(out), workers=1))
    return out / "trajectories.jsonl"


def test_a_turn_is_scored_by_what_it_points_at() -> None:
    evidence = [(15.0, 18.0)]
    assert turn_window(CROP, duration=60, grounding=True) == ((10.0, 20.0),)
    assert turn_window(FRAME, duration=60, grounding=True) == ((31.0, 31.0),)
    assert turn_window("<think>x</think><answer>[1.0, 2.0]</answer>", duration=60, grounding=True) == ((1.0, 2.0),)
    assert turn_window("<think>x</think><answer>clip</answer>", duration=60, grounding=False) is None
    assert overlaps([(18.0, 18.0)], evidence) and not overlaps([(19.0, 25.0)], evidence)
    same = score_turn(CROP, CROP, evidence=evidence, duration=60, grounding=True)
    assert same == {"action": 1.0, "overlap": 1.0, "ref_overlap": 1.0, "iou": pytest.approx(0.3)}
    other = score_turn(FRAME, CROP, evidence=evidence, duration=60, grounding=True)
    assert other == {"action": 0.0, "overlap": 0.0, "ref_overlap": 1.0, "iou": 0.0}
    broken = score_turn("<think>x", CROP, evidence=evidence, duration=60, grounding=True)
    assert broken["action"] == 0.0 and broken["overlap"] == 0.0


def test_the_teacher_writes_its_own_turns_and_a_rerun_resumes(trajectories: Path, tmp_path: Path) -> None:
    references = [t for t in read_jsonl(trajectories, "trajectory") if t.sample.task == "grounding"]
    config = TurnsConfig(trajectories=str(trajectories), out=str(tmp_path), backend="teacher")
    lines = run(config)
    assert len(lines) == sum(len(t.turns) for t in references) and {line["turn"] for line in lines} >= {0, 1}
    assert all(line["model"] == line["reference"] for line in lines)  # the reference conversation, replayed exactly
    assert {line["view"] for line in lines} == {"seen", "unseen"}
    assert all(line["scores"]["action"] == 1.0 and line["scores"]["overlap"] == line["scores"]["ref_overlap"]
               for line in lines)
    written = (tmp_path / "turns.jsonl").read_text()
    with (tmp_path / "turns.jsonl").open("a") as handle:
        handle.write('{"id": "torn')  # a kill mid-line
    assert run(config) == lines and (tmp_path / "turns.jsonl").read_text() == written  # nothing redone or lost
    perfect = re.compile(r"\| overview \| yes \| crop_video \| \d+ \|" + r" 1\.00 ± 0\.00 \|" * 3)
    assert perfect.search((tmp_path / "turns.md").read_text())


def test_a_policy_that_does_not_look_is_told_apart(trajectories: Path, tmp_path: Path) -> None:
    lines = run(TurnsConfig(trajectories=str(trajectories), out=str(tmp_path), backend="uniform"))
    assert all(line["model"].count("<answer>") == 1 for line in lines)  # it answers at once, every turn
    crops = [line["scores"]["action"] for line in lines if line["ref_action"] == "crop_video"]
    assert crops and not any(crops)
    assert "| a tool's | yes | answer |" in table(lines)


def test_a_tiny_model_writes_every_turn_under_the_grammar(trajectories: Path, tmp_path: Path) -> None:
    from medscope.train import tiny

    texts = [json.dumps(t.turns) for t in read_jsonl(trajectories, "trajectory")]
    tokenizer = tiny.build_tokenizer(texts * 3, vocab_size=600, chat_template=tiny.load_chat_template("qwen3_vl"))
    model = tiny.build_tiny_model("qwen3_vl", tokenizer, hidden_size=32, layers=1, vision_hidden=16)
    folder = tiny.save_tiny(model, tiny.build_processor("qwen3_vl", tokenizer, max_pixels=64 * 48), tmp_path / "m")
    code = cli_main(["turns", "--trajectories", str(trajectories), "--out", str(tmp_path / "out"), "--model",
                     str(folder), "--limit", "1", "--max-new-tokens", "48"])
    lines = [json.loads(line) for line in (tmp_path / "out" / "turns.jsonl").read_text().splitlines()]
    assert code == 0 and lines and all(line["id"] == lines[0]["id"] for line in lines)
    assert all(line["model"].startswith("<think>") for line in lines)  # the protocol's grammar held the format
    with pytest.raises(ValueError, match="--overview-frames"):  # a conversation the trajectory never had
        run(TurnsConfig(trajectories=str(trajectories), out=str(tmp_path / "o2"), backend="teacher",
                        agent=AgentConfig(tools=ToolConfig(overview_frames=4))))
