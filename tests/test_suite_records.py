"""Suite records: validation names the field, JSONL errors name the line, skip mode logs and goes on."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from medscope.suite.records import RecordError, Sample, Trajectory, read_jsonl, write_jsonl


def _sample(**changes: object) -> Sample:
    base = Sample(id="s/v/grounding/0", video="v.mp4", duration=100.0, question="When?", answer="[1.00, 2.00]",
                  task="grounding", evidence=[[1.0, 2.0]], source="synthclin")
    return dataclasses.replace(base, **changes)


def test_round_trip(tmp_path: Path) -> None:
    video = str(tmp_path / "videos" / "v.mp4")
    samples = [_sample(video=video, source_id="17", split="val"),
               _sample(id="x", task="mcq", options=["a", "b"], answer="B", video=video)]
    assert write_jsonl(tmp_path / "s.jsonl", samples) == 2
    assert list(read_jsonl(tmp_path / "s.jsonl")) == samples
    traj = Trajectory(samples[0], [{"text": "<answer>[1.00, 2.00]</answer>", "observation": None}], "cot", [1.5])
    write_jsonl(tmp_path / "t.jsonl", [traj])
    assert list(read_jsonl(tmp_path / "t.jsonl", "trajectory")) == [traj]


def test_video_paths_are_relative_to_the_file_so_a_suite_moves_and_reads_from_anywhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    write_jsonl(Path("suite/s.jsonl"), [_sample(video="data/v.mp4")])  # relative to the working folder
    assert json.loads(Path("suite/s.jsonl").read_text())["video"] == "../data/v.mp4"
    (tmp_path / "moved").mkdir()
    Path("suite").rename(tmp_path / "moved" / "suite")
    Path("data").rename(tmp_path / "moved" / "data")
    monkeypatch.chdir(tmp_path / "moved" / "suite")  # another working folder
    [sample] = read_jsonl(tmp_path / "moved" / "suite" / "s.jsonl")
    assert Path(sample.video) == tmp_path / "moved" / "data" / "v.mp4"


def test_older_schema_asks_for_a_rebuild(tmp_path: Path) -> None:
    old = dataclasses.asdict(_sample()) | {"schema": "medscope.sample/1"}
    (tmp_path / "s.jsonl").write_text(json.dumps(old) + "\n")
    with pytest.raises(RecordError, match=r"older medscope.*medscope suite build"):
        list(read_jsonl(tmp_path / "s.jsonl"))


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"task": "summarise"}, "field 'task' must be one of"),
        ({"evidence": [[5.0, 1.0]]}, "outside [0, 100.0] or reversed"),
        ({"evidence": [[1.0, 200.0]]}, "outside"),
        ({"evidence": [[1.0]]}, "[start, end] pairs"),
        ({"evidence": []}, "'evidence' is empty"),
        ({"source_id": 17}, "'source_id' must be null or a string"),
        ({"duration": 0.0}, "'duration' must be > 0"),
        ({"question": " "}, "field 'question' is empty"),
        ({"task": "mcq"}, "'options' is required"),
    ],
)
def test_validation_names_the_field(changes: dict, needle: str) -> None:
    with pytest.raises(RecordError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        _sample(**changes)


def test_bad_line_is_named_or_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = json.dumps(dataclasses.asdict(_sample()))
    bad = json.loads(good) | {"evidence": "soon"}
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join([good, json.dumps(bad), "{oops", good]) + "\n")
    with pytest.raises(RecordError, match=r"s.jsonl:2: field 'evidence' must be list"):
        list(read_jsonl(path))
    with caplog.at_level(logging.WARNING):
        assert len(list(read_jsonl(path, on_error="skip"))) == 2
    assert "s.jsonl:2" in caplog.text and "s.jsonl:3" in caplog.text
