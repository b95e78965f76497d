"""Source adapters: fixtures in each dataset's exact layout → segments in seconds; bad files → named errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medscope.suite.adapters import ADAPTERS, AdapterError, load_annotations
from medscope.suite.adapters import cholec80 as cholec80_adapter
from medscope.suite.adapters.medvidqa import clock_seconds
from medscope.suite.loading import LoadContext, LoadOptions
from medscope.suite.records import VideoAnnotation
from medscope.video.synthclin import SynthClinConfig, plan_annotation


def _write(path: Path, content: str) -> Path:
    path.write_text(content, encoding="utf-8")
    return path


def _raises(source: str, path: Path, *fragments: str, skipped: bool = True, **options: object) -> str:
    """With ``--strict``, loading ``path`` raises an ``AdapterError`` naming the file and every fragment. By
    default (``skipped``) the same fault is a note of a skipped or clamped record that names them too, and the
    file still loads; a fault of the whole file (``skipped=False``) raises either way. Returns the message."""
    with pytest.raises(AdapterError) as info:
        load_annotations(source, path, LoadContext(LoadOptions(strict=True, **options)))  # type: ignore[arg-type]
    message = str(info.value)
    for fragment in (path.name, *fragments):
        assert fragment in message, f"{fragment!r} not in {message!r}"
    ctx = LoadContext(LoadOptions(**options))  # type: ignore[arg-type]
    if not skipped:
        with pytest.raises(AdapterError, match=path.name):
            load_annotations(source, path, ctx)
        return message
    load_annotations(source, path, ctx)
    # the same fault, worded for what was done with it ("clamped to it" where strict says "expected end <= ...")
    assert len(ctx.notes) == 1 and ctx.notes[0].detail.startswith(message.rsplit("; ", 1)[0])
    assert ctx.notes[0].reason and ctx.notes[0].where in message and ctx.notes[0].action in ("skipped", "clamped")
    return message


def _by_id(annotations: list[VideoAnnotation]) -> dict[str, VideoAnnotation]:
    return {a.video_id: a for a in annotations}


# --- synthclin -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth_annotation() -> dict:
    return plan_annotation(SynthClinConfig(duration_seconds=120, seed=1), video_name="case1.mp4")


def test_synthclin_segments_follow_the_annotation(tmp_path: Path, synth_annotation: dict) -> None:
    ann = json.loads(json.dumps(synth_annotation))  # as the JSON file holds it
    ann["captions"].append({"start": 30.0, "end": 31.0, "text": "An extra note."})  # covered by nothing
    [video] = load_annotations("synthclin", _write(tmp_path / "case1.json", json.dumps(ann)))
    assert (video.video_id, video.video, video.duration, video.source) == ("case1", "case1.mp4", 120.0, "synthclin")
    assert video.summary == ann["summary"]
    kinds = [s.kind for s in video.segments]
    assert kinds.count("phase") == len(ann["phases"]) == 7
    assert kinds.count("event") == len(ann["events"]) >= 1
    assert kinds.count("instrument") == len(ann["instruments"]) >= 1
    assert [s.text for s in video.segments if s.kind == "caption"] == ["An extra note."]
    assert [s.start for s in video.segments] == sorted(s.start for s in video.segments)
    caption_text = {(c["start"], c["end"]): c["text"] for c in synth_annotation["captions"]}
    events = [s for s in video.segments if s.kind == "event"]
    for seg, event in zip(events, ann["events"], strict=True):
        assert (seg.start, seg.end, seg.label) == (event["start"], event["end"], event["label"])
        assert seg.meta == {"position": event["position"]}
        assert seg.text == caption_text[(event["start"], event["end"])]
    phases = [s for s in video.segments if s.kind == "phase"]
    assert [s.label for s in phases] == [p["label"] for p in ann["phases"]]
    assert phases[0].text == "The preparation phase begins." and phases[-1].end == 120.0
    tools = [s for s in video.segments if s.kind == "instrument"]
    assert all(s.meta["side"] in ("left", "right") and str(s.label) in s.text for s in tools)


def test_synthclin_folder_skips_other_json(tmp_path: Path, synth_annotation: dict) -> None:
    other = plan_annotation(SynthClinConfig(duration_seconds=60, seed=2), video_name="case2.mp4")
    _write(tmp_path / "case1.json", json.dumps(synth_annotation))
    _write(tmp_path / "case2.json", json.dumps(other))
    _write(tmp_path / "manifest.json", json.dumps({"schema": "something/else"}))
    videos = load_annotations("synthclin", tmp_path)
    assert [(v.video_id, v.duration) for v in videos] == [("case1", 120.0), ("case2", 60.0)]


def test_synthclin_errors_name_file_and_json_path(tmp_path: Path, synth_annotation: dict) -> None:
    bad = json.loads(json.dumps(synth_annotation))
    bad["events"][0]["end"] = 500.0
    _raises("synthclin", _write(tmp_path / "late.json", json.dumps(bad)), "events[0]", "(120 s)")
    del bad["events"][0]["label"]
    _raises("synthclin", _write(tmp_path / "nolabel.json", json.dumps(bad)), "events[0]", "'label'")
    _raises("synthclin", _write(tmp_path / "schema.json", '{"schema": "x/1"}'), "schema", "synthclin/1", skipped=False)
    _raises("synthclin", _write(tmp_path / "broken.json", '{\n  "schema": "synthclin/1",\n  "video": }'), ":3:",
            skipped=False)


# --- ActivityNet Captions --------------------------------------------------------------------------------

ACTIVITYNET = {
    "v_QOlSCBRmfWY": {
        "duration": 82.73,
        "timestamps": [[0.83, 19.86], [17.37, 60.81], [56.26, 83.5]],  # the last ends 0.77 s late: clamped
        "sentences": [" A young woman is seen standing in a room.", "She dances.", "She ends the dance.  "],
    },
    "v_ehGHCYKzyZ8": {"duration": 61.72, "timestamps": [[0, 12.5]], "sentences": ["A man paddles."]},
    "v_nwznKOuZM7w": {"duration": 30.0, "timestamps": [[3, 9]], "sentences": ["A dog runs."], "video": "d/nw.mkv"},
}


def test_activitynet_captions(tmp_path: Path) -> None:
    videos = _by_id(load_annotations("activitynet", _write(tmp_path / "val_1.json", json.dumps(ACTIVITYNET))))
    assert list(videos) == list(ACTIVITYNET)
    first = videos["v_QOlSCBRmfWY"]
    assert (first.video, first.duration, first.source) == ("v_QOlSCBRmfWY.mp4", 82.73, "activitynet")
    assert [(s.start, s.end) for s in first.segments] == [(0.83, 19.86), (17.37, 60.81), (56.26, 82.73)]
    assert [s.text for s in first.segments] == [
        "A young woman is seen standing in a room.",
        "She dances.",
        "She ends the dance.",
    ]
    assert {s.kind for s in first.segments} == {"caption"}
    assert videos["v_ehGHCYKzyZ8"].segments[0].end == 12.5
    assert videos["v_nwznKOuZM7w"].video == "d/nw.mkv"
    assert [s.source_id for s in first.segments] == ["v_QOlSCBRmfWY/0", "v_QOlSCBRmfWY/1", "v_QOlSCBRmfWY/2"]
    assert {v.split for v in videos.values()} == {"val"}


@pytest.mark.parametrize(
    ("video", "change", "fragments"),
    [
        ("v_ehGHCYKzyZ8", {"timestamps": [[0, 12.5], [20, 30]]}, ("v_ehGHCYKzyZ8", "2 timestamps but 1 sentences")),
        ("v_ehGHCYKzyZ8", {"timestamps": [[0, 65]]}, ("v_ehGHCYKzyZ8.timestamps[0]", "(61.72 s)", "clamped")),
        ("v_ehGHCYKzyZ8", {"timestamps": [[62, 65]]}, ("v_ehGHCYKzyZ8.timestamps[0]", "at or after the video's end")),
        ("v_ehGHCYKzyZ8", {"timestamps": [[12.5, 3]]}, ("v_ehGHCYKzyZ8.timestamps[0]", "reversed")),
        ("v_nwznKOuZM7w", {"timestamps": [[3, "9"]]}, ("v_nwznKOuZM7w.timestamps[0][1]", "'9'")),
        ("v_nwznKOuZM7w", {"duration": None}, ("v_nwznKOuZM7w.duration", "duration")),
        ("v_nwznKOuZM7w", {"sentences": [""]}, ("v_nwznKOuZM7w.sentences[0]", "non-empty string")),
    ],
)
def test_activitynet_errors(tmp_path: Path, video: str, change: dict, fragments: tuple[str, ...]) -> None:
    data = json.loads(json.dumps(ACTIVITYNET))
    data["v_QOlSCBRmfWY"]["timestamps"][2][1] = 82.73  # no other fault than the one under test
    data[video].update(change)
    _raises("activitynet", _write(tmp_path / "train.json", json.dumps(data)), *fragments)


def test_activitynet_reversed_window_skips_one_caption_not_the_file(tmp_path: Path) -> None:
    data = json.loads(json.dumps(ACTIVITYNET))
    data["v_QOlSCBRmfWY"]["timestamps"][1] = [60.81, 17.37]  # as v_0bosp4-pyTM in the official train.json
    ctx = LoadContext()
    videos = _by_id(load_annotations("activitynet", _write(tmp_path / "train.json", json.dumps(data)), ctx))
    assert len(videos) == 3 and [s.source_id for s in videos["v_QOlSCBRmfWY"].segments] == [
        "v_QOlSCBRmfWY/0", "v_QOlSCBRmfWY/2"]
    assert ctx.records == 3 + 5 and ctx.counts()["skipped"] == {"reversed window": 1}
    assert ctx.counts()["clamped"] == {"window overruns the video": 1}  # [56.26, 83.5] in an 82.73 s video
    assert ctx.notes[0].record == "v_QOlSCBRmfWY/1" and "timestamps[1]" in ctx.notes[0].where


def test_activitynet_json_syntax_error_names_the_line(tmp_path: Path) -> None:
    text = json.dumps(ACTIVITYNET, indent=1).replace('"sentences"', "sentences", 2)
    line = next(k for k, row in enumerate(text.splitlines(), start=1) if row.strip().startswith("sentences"))
    _raises("activitynet", _write(tmp_path / "train.json", text), f"train.json:{line}:", "invalid JSON", skipped=False)


# --- Charades-STA ----------------------------------------------------------------------------------------

CHARADES = """AO8RW 0.0 6.9##a person is putting a book on a shelf.
AO8RW 2.5 9.1##person begins to play on a phone.
Y6R7T 11.2 17.8##a person opens the door.

KAE9W 0 3##the person sits down.
Y6R7T 20.1 24.3##person takes a towel from the closet.
"""


def test_charades_sta_groups_by_video(tmp_path: Path) -> None:
    videos = load_annotations("charades", _write(tmp_path / "charades_sta_train.txt", CHARADES))
    assert [v.video_id for v in videos] == ["AO8RW", "Y6R7T", "KAE9W"]
    y6 = videos[1]
    assert (y6.video, y6.duration, y6.source) == ("Y6R7T.mp4", None, "charades")
    assert [(s.start, s.end, s.kind) for s in y6.segments] == [(11.2, 17.8, "query"), (20.1, 24.3, "query")]
    assert y6.segments[1].text == "person takes a towel from the closet."
    assert y6.segments[1].source_id == "charades_sta_train:6" and y6.split == "train"


def test_charades_lengths_come_from_the_charades_csv(tmp_path: Path) -> None:
    csv = ("id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\r\n"
           'Y6R7T,HR43,Kitchen,6,7,Yes,"A person opens a door, then...",door;towel,"A person opens the door.",'
           "c006 11.2 17.8;c035 20.1 24.3,30.12\r\n"
           "AO8RW,HR44,Bedroom,5,7,Yes,script,book,desc,,8.5\r\n")
    options = {"lengths": str(_write(tmp_path / "Charades_v1_train.csv", csv))}
    videos = _by_id(load_annotations("charades", _write(tmp_path / "charades_sta_train.txt", CHARADES),
                                     LoadContext(LoadOptions(**options))))  # type: ignore[arg-type]
    assert (videos["Y6R7T"].duration, videos["AO8RW"].duration, videos["KAE9W"].duration) == (30.12, 8.5, None)
    # AO8RW's second query ends at 9.1 s in an 8.5 s video: clamped by the builder, strictly an error here too
    late = CHARADES.replace("AO8RW 2.5 9.1", "AO8RW 8.6 9.1")
    _raises("charades", _write(tmp_path / "charades_sta_test.txt", late), "charades_sta_test.txt:2:", "at or after",
            **options)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("KAE9W 0 3 the person sits down.", "no '##'"),
        ("KAE9W zero 3##the person sits down.", "not numbers"),
        ("KAE9W 5.5 2.0##the person sits down.", "reversed"),
        ("KAE9W 1.0##the person sits down.", "2 fields"),
        ("KAE9W 1.0 2.0##   ", "empty sentence"),
    ],
)
def test_charades_sta_errors_name_the_line(tmp_path: Path, line: str, fragment: str) -> None:
    path = _write(tmp_path / "charades_sta_test.txt", CHARADES.replace("KAE9W 0 3##the person sits down.", line))
    _raises("charades", path, "charades_sta_test.txt:5:", fragment)
    [kept] = [v for v in load_annotations("charades", path) if v.video_id == "Y6R7T"]  # the rest still loads
    assert len(kept.segments) == 2


# --- QVHighlights ----------------------------------------------------------------------------------------

QVH = [
    {
        "qid": 8737,
        "query": "A family is playing basketball.",
        "duration": 150,
        "vid": "bP5KfdFJzC4_660.0_810.0",
        "relevant_windows": [[0, 16]],
        "relevant_clip_ids": [0, 1, 2],
        "saliency_scores": [[4, 3, 3]] * 3,
    },
    {
        "qid": 2579,
        "query": "A girl and her mother cooked.",
        "duration": 150,
        "vid": "NUsG9BgSes0_210.0_360.0",
        "relevant_windows": [[26, 36], [108, 150.5]],
    },
    {
        "qid": 5071,
        "query": "A man talks to the camera.",
        "duration": 150,
        "vid": "bP5KfdFJzC4_660.0_810.0",
        "relevant_windows": [[60, 70]],
    },
]


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def test_qvhighlights_queries_keep_every_window(tmp_path: Path) -> None:
    videos = load_annotations("qvhighlights", _write(tmp_path / "highlight_val_release.jsonl", _jsonl(QVH)))
    assert [v.video_id for v in videos] == ["bP5KfdFJzC4_660.0_810.0", "NUsG9BgSes0_210.0_360.0"]
    first, second = videos
    assert (first.video, first.duration, first.source) == ("bP5KfdFJzC4_660.0_810.0.mp4", 150.0, "qvhighlights")
    assert [(s.source_id, s.start, s.end, s.kind) for s in first.segments] == [
        ("8737", 0.0, 16.0, "query"),
        ("5071", 60.0, 70.0, "query"),
    ]
    [cooked] = second.segments
    assert cooked.text == "A girl and her mother cooked."
    assert (cooked.start, cooked.end) == (26.0, 36.0)
    assert cooked.windows == ((26.0, 36.0), (108.0, 150.0))  # 0.5 s past the end: clamped


def test_qvhighlights_errors_name_the_line(tmp_path: Path) -> None:
    test_split = [dict(QVH[0]), {k: v for k, v in QVH[1].items() if k != "relevant_windows"}]
    path = _write(tmp_path / "highlight_test_release.jsonl", _jsonl(test_split))
    _raises("qvhighlights", path, "highlight_test_release.jsonl:2:", "relevant_windows")
    late = [QVH[0], {**QVH[1], "relevant_windows": [[26, 36], [140, 160]]}]
    _raises("qvhighlights", _write(tmp_path / "late.jsonl", _jsonl(late)), "late.jsonl:2: relevant_windows[1]",
            "clamped")
    mixed = [QVH[0], {**QVH[2], "duration": 120}]
    _raises("qvhighlights", _write(tmp_path / "mixed.jsonl", _jsonl(mixed)), "mixed.jsonl:2: duration", "150")
    _raises("qvhighlights", _write(tmp_path / "bad.jsonl", _jsonl([QVH[0], QVH[2]]) + "\n{oops\n"), "bad.jsonl:4:",
            "JSON")


# --- Cholec80 --------------------------------------------------------------------------------------------


def _phase_file(folder: Path, name: str, runs: list[tuple[str, int]]) -> Path:
    rows, frame = ["Frame\tPhase"], 0
    for phase, count in runs:
        rows += [f"{frame + k}\t{phase}" for k in range(count)]
        frame += count
    return _write(folder / name, "\n".join(rows) + "\n")


def test_cholec80_phase_runs(tmp_path: Path) -> None:
    _phase_file(tmp_path, "video02-phase.txt", [("Preparation", 50), ("CalotTriangleDissection", 100)])
    _phase_file(
        tmp_path,
        "video01-phase.txt",
        [("Preparation", 25), ("CalotTriangleDissection", 75), ("ClippingCutting", 50), ("GallbladderDissection", 10)],
    )
    _write(tmp_path / "video01-tool.txt", "Frame\tGrasper\n0\t1\n")  # a tool file with a bad header: noted
    ctx = LoadContext(LoadOptions(fps=25.0))
    videos = load_annotations("cholec80", tmp_path, ctx)
    notes = [(n.action, n.reason, n.record) for n in ctx.notes]
    assert notes == [("skipped", "unexpected header", "video01-tool.txt")]
    assert [(v.video_id, v.video, v.duration) for v in videos] == [
        ("video01", "video01.mp4", 6.4),
        ("video02", "video02.mp4", 6.0),
    ]
    one = videos[0].segments
    assert [(s.start, s.end, s.label, s.kind) for s in one] == [
        (0.0, 1.0, "Preparation", "phase"),
        (1.0, 4.0, "CalotTriangleDissection", "phase"),
        (4.0, 6.0, "ClippingCutting", "phase"),
        (6.0, 6.4, "GallbladderDissection", "phase"),
    ]
    assert [s.text for s in one] == [
        "The preparation phase.",
        "The Calot triangle dissection phase.",
        "The clipping and cutting phase.",
        "The gallbladder dissection phase.",
    ]
    assert one[1].meta == {"name": "Calot triangle dissection"}
    [again] = cholec80_adapter.load(tmp_path / "video02-phase.txt", LoadContext(LoadOptions(fps=1.0)))
    assert (again.duration, again.segments[1].start, again.segments[1].end) == (150.0, 50.0, 150.0)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("Frame Phase Extra\n0\tPreparation\n", ("video03-phase.txt:1:", "header")),
        ("Frame\tPhase\n0\tPreparation\nx1\tPreparation\n", ("video03-phase.txt:3:", "'x1' is not an integer")),
        ("Frame\tPhase\n0\tPreparation\n2\tPreparation\n2\tPreparation\n", ("video03-phase.txt:4:", "increasing")),
        ("Frame\tPhase\n0\tPreparation\n1\n", ("video03-phase.txt:3:", "1 fields")),
        ("Frame\tPhase\n", ("video03-phase.txt", "no frame rows")),
    ],
)
def test_cholec80_errors_name_the_line(tmp_path: Path, text: str, fragments: tuple[str, ...]) -> None:
    _raises("cholec80", _write(tmp_path / "video03-phase.txt", text), *fragments, fps=25.0)


def test_cholec80_never_assumes_a_frame_rate(tmp_path: Path) -> None:
    path = _phase_file(tmp_path, "video05-phase.txt", [("Preparation", 50)])
    message = _raises("cholec80", path, "--fps 25")
    assert "frame rate" in message


def test_cholec80_tool_presence_runs(tmp_path: Path) -> None:
    phases = _phase_file(tmp_path / "phase_annotations", "video07-phase.txt",
                         [("Preparation", 100), ("CalotTriangleDissection", 150)]) if (
        (tmp_path / "phase_annotations").mkdir() or True) else None
    (tmp_path / "tool_annotations").mkdir()
    tools = ["Frame\tGrasper\tBipolar\tHook\tScissors\tClipper\tIrrigator\tSpecimenBag"]
    hook = [0, 1, 1, 0, 0, 1, 1, 1, 0, 1]  # one row per 25 frames = 1 s at 25 fps
    tools += [f"{25 * k}\t1\t0\t{h}\t0\t0\t0\t0" for k, h in enumerate(hook)]
    _write(tmp_path / "tool_annotations" / "video07-tool.txt", "\n".join(tools) + "\n")
    [video] = load_annotations("cholec80", tmp_path, LoadContext(LoadOptions(fps=25.0)))
    assert phases is not None and video.duration == 10.0
    hooks = [(s.start, s.end) for s in video.segments if s.label == "Hook"]
    assert hooks == [(1.0, 3.0), (5.0, 8.0), (9.0, 10.0)]
    grasper = [s for s in video.segments if s.label == "Grasper"]
    assert [(s.start, s.end, s.kind, s.text) for s in grasper] == [(0.0, 10.0, "instrument", "A grasper is in view.")]


def test_cholec80_readable_names() -> None:
    assert cholec80_adapter.readable("GallbladderRetraction") == "gallbladder retraction"
    assert cholec80_adapter.readable("CleaningCoagulation") == "cleaning and coagulation"
    assert cholec80_adapter.readable("calot_triangle") == "Calot triangle"


# --- MedVidQA --------------------------------------------------------------------------------------------

MEDVIDQA = [
    {
        "sample_id": 1,
        "question": "How to place a cervical collar?",
        "answer_start": "01:14",
        "answer_end": "02:28",
        "answer_start_second": 74,
        "answer_end_second": 148,
        "video_length": 324,
        "video_id": "YdZJ7xk2RaU",
        "video_url": "https://www.youtube.com/watch?v=YdZJ7xk2RaU",
    },
    {
        "sample_id": 2,
        "question": "How to do a chin tuck exercise?",
        "answer_start": "1:00:05",
        "answer_end": "1:01:30.5",
        "video_length": 3700,
        "video_id": "aB3x",
        "video_link": "https://youtu.be/aB3x",
    },
    {
        "sample_id": 3,
        "question": " How to check the collar fit? ",
        "answer_start": "04:10",
        "answer_end": "05:24",
        "answer_start_second": 250,
        "answer_end_second": 324,
        "video_length": 324,
        "video_id": "YdZJ7xk2RaU",
        "video_url": "https://www.youtube.com/watch?v=YdZJ7xk2RaU",
    },
]


def test_medvidqa_questions(tmp_path: Path) -> None:
    videos = load_annotations("medvidqa", _write(tmp_path / "val.json", json.dumps(MEDVIDQA)))
    assert [(v.video_id, v.video, v.duration, v.source) for v in videos] == [
        ("YdZJ7xk2RaU", "YdZJ7xk2RaU.mp4", 324.0, "medvidqa"),
        ("aB3x", "aB3x.mp4", 3700.0, "medvidqa"),
    ]
    collar = videos[0].segments
    assert [(s.start, s.end, s.kind, s.text) for s in collar] == [
        (74.0, 148.0, "question", "How to place a cervical collar?"),
        (250.0, 324.0, "question", "How to check the collar fit?"),
    ]
    assert collar[0].meta == {"url": "https://www.youtube.com/watch?v=YdZJ7xk2RaU"} and collar[0].source_id == "1"
    assert {v.split for v in videos} == {"val"}
    [chin] = videos[1].segments  # no *_second fields: parsed from H:MM:SS, and the url from video_link
    assert (chin.start, chin.end, chin.meta["url"]) == (3605.0, 3690.5, "https://youtu.be/aB3x")


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ({"answer_end_second": 160}, ("[0]", "answer_end_second=160", "'02:28'")),
        ({"answer_start": "1m14s"}, ("[0].answer_start", "MM:SS")),
        ({"answer_end_second": 400, "answer_end": "06:40"}, ("[0]", "(324 s)", "clamped")),
        ({"video_length": 100, "video_id": "short"}, ("[0]", "(100 s)")),
        ({"question": None}, ("[0].question", "non-empty string")),
    ],
)
def test_medvidqa_errors_name_the_sample(tmp_path: Path, change: dict, fragments: tuple[str, ...]) -> None:
    data = json.loads(json.dumps(MEDVIDQA))
    data[0].update(change)
    _raises("medvidqa", _write(tmp_path / "train.json", json.dumps(data)), *fragments)


def test_medvidqa_video_length_must_agree(tmp_path: Path) -> None:
    data = json.loads(json.dumps(MEDVIDQA))
    data[2]["video_length"] = 330
    _raises("medvidqa", _write(tmp_path / "train.json", json.dumps(data)), "[2].video_length", "324")
    _raises("medvidqa", _write(tmp_path / "dict.json", '{"samples": []}'), "expected a JSON list", skipped=False)


def test_clock_seconds() -> None:
    assert clock_seconds("01:14") == 74 and clock_seconds("75:10") == 4510 and clock_seconds("1:00:05") == 3605
    assert clock_seconds("0:07.5") == 7.5 and clock_seconds("74") is None and clock_seconds("a:b") is None


# --- dispatch and real data ------------------------------------------------------------------------------


def test_dispatch_and_unknown_source(tmp_path: Path) -> None:
    assert set(ADAPTERS) == {"synthclin", "activitynet", "charades", "qvhighlights", "cholec80", "medvidqa",
                             "activitynet13", "autolaparo", "cataract101", "ophnet", "multibypass140", "svu31k"}
    path = _write(tmp_path / "charades.txt", CHARADES)
    assert load_annotations("charades", str(path)) == ADAPTERS["charades"](path, LoadContext())
    with pytest.raises(ValueError, match=r"unknown annotation source 'ego4d'.*charades.*medvidqa"):
        load_annotations("ego4d", path)
    with pytest.raises(FileNotFoundError):
        load_annotations("charades", tmp_path / "missing.txt")
    with pytest.raises(AdapterError, match=r"no \*-phase\.txt files"):
        load_annotations("cholec80", tmp_path)


# Where each source's files sit under $MEDSCOPE_REAL_DATA/<source>/ (a folder is read as one input).
REAL_FILES = {
    "synthclin": ".",
    "activitynet": "*.json",
    "charades": "*.txt",
    "qvhighlights": "*train*.jsonl",
    "cholec80": "phase_annotations",
    "medvidqa": "*.json",
    "autolaparo": "labels",
    "cataract101": ".",
    "ophnet": "*phase*.csv",
    "multibypass140": ".",
    "activitynet13": "*.json",
    "svu31k": "svu-31k*.json",
}


@pytest.mark.skipif(not os.environ.get("MEDSCOPE_REAL_DATA"), reason="set MEDSCOPE_REAL_DATA to a dataset folder")
@pytest.mark.parametrize("source", sorted(REAL_FILES))
def test_real_data(source: str) -> None:
    root = Path(os.environ["MEDSCOPE_REAL_DATA"]) / source
    pattern = REAL_FILES[source]
    paths = [root / pattern] if "*" not in pattern else sorted(root.glob(pattern))
    paths = [p for p in paths if p.exists()] or ([root] if source == "cholec80" and root.is_dir() else [])
    if not paths:
        pytest.skip(f"no {source} data under {root}")
    for path in paths:
        videos = load_annotations(source, path, LoadContext(LoadOptions(fps=25.0 if source == "cholec80" else None)))
        assert videos and all(v.segments and v.source == source for v in videos), path
        for video in videos:
            limit = video.duration if video.duration is not None else float("inf")
            assert all(0 <= s.start <= s.end <= limit for s in video.segments), (path, video.video_id)
