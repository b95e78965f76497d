"""SVU-31K adapter: records in the authors' sharegpt layout → "qa" segments in seconds; bad records → named notes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from medscope.suite.adapters import AdapterError, svu31k
from medscope.suite.loading import LoadContext, LoadOptions
from medscope.suite.records import VideoAnnotation

CLIP_FILE = "svu-31k-video-clip-train.json.json"  # the double suffix of the files on the HF hub


def _turns(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


RECORDS: list[dict[str, Any]] = [
    {"id": 1, "messages": _turns("<video>What is the grasper holding? ", " The gallbladder fundus."),
     "videos": ["/mnt/authors/SVU-31K/videos/vd01en3812.mp4"], "timecodes": [1, 3.5],
     "tag": "Visual Perception Reasoning"},
    {"id": "2", "messages": _turns("<video>\nDescribe this clip.", "The surgeon clips the cystic duct."),
     "videos": ["/mnt/authors/SVU-31K/videos/vd01en3812.mp4"], "timecodes": [2.5, -1],  # to the end of the video
     "tag": "video clip description"},
    {"id": 3, "messages": _turns("<video>What happens after the incision?", "The trocar is inserted."),
     "videos": ["D:\\SVU\\lt01en0042.mp4"], "timecodes": [10, 20.5], "tag": "Visual Temporal Reasoning"},
    {"total_id": 7, "id": 70, "messages": _turns("<video>Describe the whole video in detail.", "A cholecystectomy."),
     "videos": ["/mnt/authors/SVU-31K/videos/vd01en3812.mp4"], "tag": "full video detailed description"},
]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``vd01en3812.mp4``: 6 s at 2 fps, 32x32 (``lt01en0042`` is never there)."""
    folder = tmp_path_factory.mktemp("videos")
    with av.open(str(folder / "vd01en3812.mp4"), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=2)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts = i  # the stream's time base is 1 / fps
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return folder


def _write(folder: Path, records: Any, name: str = CLIP_FILE) -> Path:
    path = folder / name
    path.write_text(json.dumps(records, indent=2), encoding="utf-8")
    return path


def _by_id(annotations: list[VideoAnnotation]) -> dict[str, VideoAnnotation]:
    return {a.video_id: a for a in annotations}


def _windows(annotation: VideoAnnotation) -> list[tuple[str | None, float, float]]:
    return [(s.source_id, s.start, s.end) for s in annotation.segments]


def test_records_with_the_video_present(tmp_path: Path, videos: Path) -> None:
    ctx = LoadContext(videos=videos)
    found = svu31k.load(_write(tmp_path, RECORDS), ctx)
    assert [(v.video_id, v.video, v.duration, v.source, v.split, v.summary) for v in found] == [
        ("vd01en3812", "vd01en3812.mp4", 6.0, "svu31k", "train", None),
        ("lt01en0042", "lt01en0042.mp4", None, "svu31k", "train", None),  # a Windows path; no file: no duration
    ]
    local, remote = found
    # seconds as written; end -1 is the video's end; the full-video record (total_id 7) covers [0, duration]
    assert _windows(local) == [("1", 1.0, 3.5), ("2", 2.5, 6.0), ("7", 0.0, 6.0)]
    assert _windows(remote) == [("3", 10.0, 20.5)]
    assert {s.kind for v in found for s in v.segments} == {"qa"}
    first = local.segments[0]
    assert first.text == "What is the grasper holding?"
    assert first.meta == {"answer": "The gallbladder fundus.", "task": "grounded_vqa",
                          "tag": "Visual Perception Reasoning"}
    assert local.segments[1].text == "Describe this clip."  # the <video> token and the newline after it dropped
    assert ctx.notes == [] and ctx.records == 4


def test_end_of_video_and_full_video_records_need_the_video(tmp_path: Path) -> None:
    path = _write(tmp_path, RECORDS)
    ctx = LoadContext()  # no --videos
    found = _by_id(svu31k.load(path, ctx))
    assert _windows(found["vd01en3812"]) == [("1", 1.0, 3.5)] and found["vd01en3812"].duration is None
    assert _windows(found["lt01en0042"]) == [("3", 10.0, 20.5)]
    assert [(n.action, n.reason, n.where, n.record) for n in ctx.notes] == [
        ("skipped", "end -1 needs the video: pass --videos", f"{path}: [1].timecodes", "2"),
        ("skipped", "full-video record (no timecodes)", f"{path}: [3]", "7"),
    ]
    assert all("'vd01en3812'" in n.detail and "pass --videos" in n.detail for n in ctx.notes)
    with pytest.raises(AdapterError, match=r"\[1\]\.timecodes: end -1 means the end of vd01en3812\.mp4"):
        svu31k.load(path, LoadContext(LoadOptions(strict=True)))


def test_tags_map_to_tasks(tmp_path: Path, videos: Path) -> None:
    tags = {"video clip description": "fine_caption", "VIDEO CLIP  DESCRIPTION": "fine_caption",
            "full video detailed description": "fine_caption", "Visual Temporal Reasoning": "grounded_vqa",
            "visual perception reasoning": "grounded_vqa"}
    records = [dict(RECORDS[0], id=k, tag=tag) for k, tag in enumerate([*tags, "Surgical Skill Assessment"])]
    ctx = LoadContext(videos=videos)
    [video] = svu31k.load(_write(tmp_path, records, "clip_test_set.json"), ctx)
    assert [(s.meta["tag"], s.meta["task"]) for s in video.segments] == list(tags.items())
    assert video.split == "test"
    [note] = ctx.notes
    assert (note.reason, note.record) == ("unknown tag", "5")
    assert "[5].tag: got 'Surgical Skill Assessment'" in note.detail


def test_window_overrunning_the_video_is_clamped(tmp_path: Path, videos: Path) -> None:
    path = _write(tmp_path, [dict(RECORDS[0], timecodes=[4, 9])], "clips.json")
    ctx = LoadContext(videos=videos)
    [video] = svu31k.load(path, ctx)
    assert _windows(video) == [("1", 4.0, 6.0)] and video.split is None
    assert [(n.action, n.where) for n in ctx.notes] == [("clamped", f"{path}: [0].timecodes")]


def _raises(path: Path, *fragments: str, videos: Path | None = None) -> None:
    """Strict: an AdapterError naming the file and every fragment. Lenient: exactly that one note, and every
    other record still loads."""
    with pytest.raises(AdapterError) as info:
        svu31k.load(path, LoadContext(LoadOptions(strict=True), videos=videos))
    message = str(info.value)
    for fragment in (str(path), *fragments):
        assert fragment in message, f"{fragment!r} not in {message!r}"
    ctx = LoadContext(videos=videos)
    found = svu31k.load(path, ctx)
    assert [n.detail for n in ctx.notes] == [message], "the lenient load notes exactly the fault strict raised"
    assert ctx.notes[0].action == "skipped" and ctx.notes[0].where in message and ctx.notes[0].record == "1"
    assert [s.source_id for v in found for s in v.segments] == ["2", "7", "3"]  # grouped by video


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ({"timecodes": [1, "3.5"]}, ("[0].timecodes[1]", "'3.5'", "seconds")),
        ({"timecodes": [3.5, 1]}, ("[0].timecodes", "reversed")),
        ({"timecodes": [7, -1]}, ("[0].timecodes", "at or after the video's end (6 s)")),
        ({"timecodes": [[1, 3.5]]}, ("[0].timecodes", "[start, end] pair")),
        ({"messages": _turns("<video>", "An answer.")}, ("[0].messages[0].content", "only the <video> token")),
        ({"messages": [{"role": "assistant", "content": "Hi."}, *_turns("<video>Q?", "A.")]},
         ("[0].messages", "got 3 turns", "expected 2 turns")),
        ({"messages": [{"role": "human", "content": "<video>Q?"}, {"role": "assistant", "content": "A."}]},
         ("[0].messages[0].role", "'human'", "expected 'user'")),
        ({"messages": _turns("<video>Q?", "")}, ("[0].messages[1].content", "non-empty string")),
        ({"videos": ["/a/vd01en3812.mp4", "/a/other.mp4"]}, ("[0].videos", "one video path")),
        ({"videos": None}, ("[0].videos", "one video path")),
        ({"tag": None}, ("[0].tag", "non-empty string")),
        ({"id": True}, ("[0].id", "True", "id")),
    ],
)
def test_malformed_record_is_skipped_or_raised(tmp_path: Path, videos: Path, change: dict, fragments: tuple) -> None:
    records = json.loads(json.dumps(RECORDS))
    records[0].update(change)
    if change.get("id") is True:
        records[0]["total_id"] = 1  # the note still names the record
    _raises(_write(tmp_path, records), *fragments, videos=videos)


def test_missing_field_names_it(tmp_path: Path, videos: Path) -> None:
    records = json.loads(json.dumps(RECORDS))
    del records[0]["messages"]
    _raises(_write(tmp_path, records), "[0]", "missing field 'messages'", videos=videos)


def test_whole_file_faults_raise(tmp_path: Path) -> None:
    path = _write(tmp_path, {"data": RECORDS}, "svu.json")
    with pytest.raises(AdapterError, match=r"svu\.json: top level is a dict; expected a JSON list"):
        svu31k.load(path, LoadContext())
    path.write_text('[\n  {"id": 1,\n  "tag": }\n]', encoding="utf-8")
    with pytest.raises(AdapterError, match=r"svu\.json:3: invalid JSON"):
        svu31k.load(path, LoadContext())
