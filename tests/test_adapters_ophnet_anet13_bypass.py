"""ActivityNet-1.3, OphNet 2024 and MultiBypass140 adapters: fixtures in each dataset's exact layout (OphNet's
BOM and CRLF included) → segments in seconds, splits, labels and source ids; a malformed record is skipped
and noted by default and an error naming the file, line or JSON path and field with ``strict``."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from medscope.suite.adapters import AdapterError, ophnet
from medscope.suite.adapters import activitynet13 as anet13
from medscope.suite.adapters import multibypass140 as bypass
from medscope.suite.loading import LoadContext, LoadOptions
from medscope.suite.records import VideoAnnotation


def _write(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path


def _load(module: ModuleType, path: Path, ctx: LoadContext | None = None) -> list[VideoAnnotation]:
    """As ``load_annotations`` does: the adapter, then ``--split`` applied to ``VideoAnnotation.split``."""
    ctx = ctx if ctx is not None else LoadContext()
    return [a for a in module.load(path, ctx) if ctx.wanted(a.split)]


def _faulty(module: ModuleType, path: Path, *fragments: str) -> list[VideoAnnotation]:
    """With ``strict`` the load raises an ``AdapterError`` naming the file and every fragment; by default the
    same fault is the one note of the load (its place and a reason) and the rest loads, which is returned."""
    with pytest.raises(AdapterError) as info:
        _load(module, path, LoadContext(LoadOptions(strict=True)))
    message = str(info.value)
    for fragment in (path.name, *fragments):
        assert fragment in message, f"{fragment!r} not in {message!r}"
    ctx = LoadContext()
    videos = _load(module, path, ctx)
    assert [n.detail for n in ctx.notes] == [message], "the lenient load notes exactly the fault strict raised"
    [note] = ctx.notes
    assert note.action == "skipped" and note.reason and note.where in message and path.name in note.where
    return videos


def _by_id(annotations: list[VideoAnnotation]) -> dict[str, VideoAnnotation]:
    return {a.video_id: a for a in annotations}


# --- ActivityNet-1.3 -------------------------------------------------------------------------------------

ANET13: dict[str, Any] = {
    "version": "VERSION 1.3",
    "taxonomy": [{"nodeId": 0, "nodeName": "Root", "parentId": None, "parentName": None},
                 {"nodeId": 1, "nodeName": "Ballet", "parentId": 0, "parentName": "Root"}],
    "database": {
        "sJFgo9H6zNo": {"subset": "training", "duration": 139.042, "resolution": "640x360",
                        "url": "https://www.youtube.com/watch?v=sJFgo9H6zNo",
                        "annotations": [{"segment": [0.01, 123.42], "label": "Fun sliding down"}]},
        "QOlSCBRmfWY": {"subset": "validation", "duration": 82.73, "resolution": "1280x720",
                        "url": "https://www.youtube.com/watch?v=QOlSCBRmfWY",
                        "annotations": [{"segment": [0.83, 19.86], "label": "Ballet"},
                                        {"segment": [56.26, 82.73], "label": "Ballet"}]},
        "0dkIbKXXFzI": {"subset": "testing", "duration": 33.3, "resolution": "1920x1080",
                        "url": "https://www.youtube.com/watch?v=0dkIbKXXFzI", "annotations": []},
    },
}


def _anet13(**changes: object) -> dict:
    data = json.loads(json.dumps(ANET13))
    data["database"].update(changes)
    return data


def test_activitynet13_database(tmp_path: Path) -> None:
    data = _anet13()
    data["database"]["QOlSCBRmfWY"]["annotations"][1]["segment"] = [56.26, 83.5]  # 0.77 s late: clamped
    ctx = LoadContext()
    videos = _by_id(_load(anet13, _write(tmp_path / "activity_net.v1-3.min.json", json.dumps(data)), ctx))
    assert list(videos) == ["v_sJFgo9H6zNo", "v_QOlSCBRmfWY"]  # the testing video has no labels: skipped
    ballet = videos["v_QOlSCBRmfWY"]
    assert (ballet.video, ballet.duration, ballet.source, ballet.split) == ("v_QOlSCBRmfWY.mp4", 82.73,
                                                                             "activitynet13", "val")
    assert [(s.start, s.end, s.kind, s.label, s.text) for s in ballet.segments] == [
        (0.83, 19.86, "event", "Ballet", "Ballet."), (56.26, 82.73, "event", "Ballet", "Ballet.")]
    assert [s.source_id for s in ballet.segments] == ["QOlSCBRmfWY/0", "QOlSCBRmfWY/1"]
    assert videos["v_sJFgo9H6zNo"].split == "train"
    assert videos["v_sJFgo9H6zNo"].segments[0].text == "Fun sliding down."
    assert ctx.records == 3 + 3
    assert ctx.counts() == {"skipped": {"no annotations": 1}, "clamped": {"window overruns the video": 1},
                            "disagrees": {}}
    skipped = next(n for n in ctx.notes if n.action == "skipped")
    assert skipped.record == "0dkIbKXXFzI" and "database.0dkIbKXXFzI.annotations" in skipped.where


def test_activitynet13_testing_subset_is_no_error_and_split_is_for_the_caller(tmp_path: Path) -> None:
    path = _write(tmp_path / "activity_net.v1-3.min.json", json.dumps(_anet13()))
    strict = LoadContext(LoadOptions(strict=True))
    assert len(_load(anet13, path, strict)) == 2 and strict.counts()["skipped"] == {"no annotations": 1}
    assert [v.video_id for v in _load(anet13, path, LoadContext(LoadOptions(split="val")))] == ["v_QOlSCBRmfWY"]
    assert anet13.anet_video_id("v_QOlSCBRmfWY") == "v_QOlSCBRmfWY" and anet13.anet_video_id("abc") == "v_abc"


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ({"annotations": [{"segment": [19.86, 0.83], "label": "Ballet"}]},
         ("database.QOlSCBRmfWY.annotations[0].segment", "reversed")),
        ({"annotations": [{"segment": [0.83, "19.86"], "label": "Ballet"}]},
         ("database.QOlSCBRmfWY.annotations[0].segment[1]", "'19.86'")),
        ({"annotations": [{"segment": [0.83, 19.86]}]}, ("database.QOlSCBRmfWY.annotations[0]", "'label'")),
        ({"annotations": [{"segment": [0.83, 19.86], "label": " "}]},
         ("database.QOlSCBRmfWY.annotations[0].label", "non-empty string")),
        ({"subset": "dev"}, ("database.QOlSCBRmfWY.subset", "'dev'", "training, validation, testing")),
        ({"duration": None}, ("database.QOlSCBRmfWY.duration", "duration")),
        ({"annotations": {"segment": [0, 1]}}, ("database.QOlSCBRmfWY.annotations", "expected a list")),
    ],
)
def test_activitynet13_errors_name_the_json_path(tmp_path: Path, change: dict, fragments: tuple[str, ...]) -> None:
    data = _anet13()
    del data["database"]["0dkIbKXXFzI"]  # no other note than the fault under test
    data["database"]["QOlSCBRmfWY"].update(change)
    videos = _faulty(anet13, _write(tmp_path / "activity_net.v1-3.min.json", json.dumps(data)), *fragments)
    assert "v_sJFgo9H6zNo" in _by_id(videos)  # the rest of the file loads


def test_activitynet13_whole_file_faults(tmp_path: Path) -> None:
    captions = _write(tmp_path / "val_1.json", json.dumps({"v_x": {"duration": 3, "timestamps": [], "sentences": []}}))
    for ctx in (LoadContext(), LoadContext(LoadOptions(strict=True))):
        with pytest.raises(AdapterError, match=r"val_1\.json: top level has no 'database'"):
            anet13.load(captions, ctx)


# --- OphNet 2024 -----------------------------------------------------------------------------------------

OPH_OPERATIONS = [
    "video_id,start,end,split,surgery_id,phase_id,operation_id",
    "case_0002,0,10,train,5,3,2",
    "case_0002,11.33,15.23,train,0,6,8",
    "case_0002,15.23,22.14,train,0,0,0",
    "case_0013,0,4.5,val,1,51,106",
    "case_0013,4.5,30.02,val,1,7,13",
    "case_0021,2.5,8,test,3,4,9",
]
OPH_PHASES = [
    "video_id,start,end,split,surgery_id,phase_id",
    "case_0002,0,10,train,5,3",
    "case_0002,11.33,22.14,train,0,6",
    "case_0013,0,4.5,val,1,51",
    "case_0013,4.5,30.02,val,1,7",
]
OPH_PHASE_JSON: dict[str, Any] = {
    "database": {
        "case_0002": {"annotations": [{"label": "3", "label_id": 3, "segment": [0.0, 10.0]},
                                      {"label": "6", "label_id": 6, "segment": [11.33, 22.14]}],
                      "duration": 20.5, "fps": 59.9, "subset": "train"},  # the second ends 1.64 s late: clamped
        "case_0013": {"annotations": [{"label": "51", "label_id": 51, "segment": [0.0, 4.5]},
                                      {"label": "7", "label_id": 7, "segment": [4.5, 30.02]}],
                      "duration": 30.02, "fps": 25, "subset": "val"},
    },
    "version": "OphNet2024",
}


def _csv(path: Path, rows: list[str], *, bom: bool) -> Path:
    """As the official files: CRLF line ends, a byte-order mark on some (loca_all, loca_challenge, surgery)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((("\ufeff" if bom else "") + "\r\n".join(rows) + "\r\n").encode("utf-8"))
    return path


def test_ophnet_operation_csv_with_bom_and_crlf(tmp_path: Path) -> None:
    path = _csv(tmp_path / "OphNet2024_loca_challenge.csv", OPH_OPERATIONS, bom=True)
    ctx = LoadContext()
    videos = _by_id(_load(ophnet, path, ctx))
    assert list(videos) == ["case_0002", "case_0013", "case_0021"] and ctx.records == 6 and not ctx.notes
    first = videos["case_0002"]
    assert (first.video, first.duration, first.source, first.split) == ("case_0002.mp4", None, "ophnet", "train")
    assert [(s.start, s.end, s.kind, s.label, s.text) for s in first.segments] == [
        (0.0, 10.0, "event", "2", "Operation 2."), (11.33, 15.23, "event", "8", "Operation 8."),
        (15.23, 22.14, "event", "0", "Operation 0.")]
    assert first.segments[1].meta == {"name": "operation 8", "surgery_id": 0, "phase_id": 6}
    assert [s.source_id for s in first.segments] == ["case_0002/0", "case_0002/1", "case_0002/2"]
    others = videos["case_0013"].segments[0]  # 106 is the challenge files' "Others" operation
    assert (others.label, others.meta["name"], others.source_id) == ("106", "other operations", "case_0013/0")
    assert (videos["case_0013"].split, videos["case_0021"].split) == ("val", "test")
    # in loca_all the same id is a class of its own
    [_, case13, _] = _load(ophnet, _csv(tmp_path / "OphNet2024_loca_all.csv", OPH_OPERATIONS, bom=True))
    assert (case13.segments[0].text, case13.segments[0].meta["name"]) == ("Operation 106.", "operation 106")
    test_only = _load(ophnet, path, LoadContext(LoadOptions(split="test")))
    assert [v.video_id for v in test_only] == ["case_0021"]


def test_ophnet_phase_csv_and_json_agree(tmp_path: Path) -> None:
    csv_videos = _by_id(_load(ophnet, _csv(tmp_path / "OphNet2024_loca_challenge_phase.csv", OPH_PHASES, bom=False)))
    case2 = csv_videos["case_0002"]
    assert [(s.start, s.end, s.kind, s.label, s.text) for s in case2.segments] == [
        (0.0, 10.0, "phase", "3", "Phase 3."), (11.33, 22.14, "phase", "6", "Phase 6.")]
    assert case2.segments[0].meta == {"name": "phase 3", "surgery_id": 5}
    assert csv_videos["case_0013"].segments[0].meta["name"] == "other phases"  # 51: the "Others" phase
    ctx = LoadContext()
    json_videos = _by_id(_load(ophnet, _write(tmp_path / "OphNet2024_phase.json", json.dumps(OPH_PHASE_JSON)), ctx))
    case2_json = json_videos["case_0002"]
    assert (case2_json.duration, case2_json.split, case2_json.source) == (20.5, "train", "ophnet")
    assert [(s.start, s.end) for s in case2_json.segments] == [(0.0, 10.0), (11.33, 20.5)]
    assert ctx.counts()["clamped"] == {"window overruns the video": 1}
    assert case2_json.segments[0].meta == {"name": "phase 3", "label_id": 3}
    for video_id in ("case_0002", "case_0013"):  # the same segments, source ids and labels from either file
        assert [(s.source_id, s.label, s.kind, s.text) for s in json_videos[video_id].segments] == [
            (s.source_id, s.label, s.kind, s.text) for s in csv_videos[video_id].segments]
    operations = {"database": {"case_0002": {**OPH_PHASE_JSON["database"]["case_0002"], "duration": 299.38}}}
    [ops] = _load(ophnet, _write(tmp_path / "OphNet2024_operation.json", json.dumps(operations)))
    assert {s.kind for s in ops.segments} == {"event"} and ops.segments[0].text == "Operation 3."


def test_ophnet_folder_reads_the_phase_file(tmp_path: Path) -> None:
    _csv(tmp_path / "OphNet2024_loca_all.csv", OPH_OPERATIONS, bom=True)
    _csv(tmp_path / "OphNet2024_loca_challenge.csv", OPH_OPERATIONS, bom=True)
    _csv(tmp_path / "OphNet2024_loca_challenge_phase.csv", OPH_PHASES, bom=False)
    _csv(tmp_path / "OphNet2024_surgery.csv", ["video_id,surgery", "case_0002,5", 'case_0814,"1,13,14"'], bom=True)
    _write(tmp_path / "OphNet2024_phase.json", json.dumps(OPH_PHASE_JSON))
    videos = _load(ophnet, tmp_path)  # the phase CSV only: the JSON holds the same segments
    assert [(v.video_id, v.duration, len(v.segments)) for v in videos] == [("case_0002", None, 2),
                                                                           ("case_0013", None, 2)]
    assert {s.kind for v in videos for s in v.segments} == {"phase"}
    tal = tmp_path / "tal_annotations"
    _write(tal / "OphNet2024_phase.json", json.dumps(OPH_PHASE_JSON))
    _write(tal / "OphNet2024_operation.json", json.dumps(OPH_PHASE_JSON))
    assert [v.duration for v in _load(ophnet, tal)] == [20.5, 30.02]  # no phase CSV: the phase JSON
    _csv(tmp_path / "operations" / "OphNet2024_loca_all.csv", OPH_OPERATIONS, bom=True)
    with pytest.raises(AdapterError, match="no OphNet phase file"):
        _load(ophnet, tmp_path / "operations")


def test_ophnet_files_that_are_not_segment_files(tmp_path: Path) -> None:
    surgery = _csv(tmp_path / "OphNet2024_surgery.csv", ["video_id,surgery", 'case_0814,"1,13,14"'], bom=True)
    renamed = _write(tmp_path / "tal.json", json.dumps(OPH_PHASE_JSON))
    other = _csv(tmp_path / "other.csv", ["id,begin,finish", "a,1,2"], bom=False)
    for ctx in (LoadContext(), LoadContext(LoadOptions(strict=True))):
        with pytest.raises(AdapterError, match=r"OphNet2024_surgery\.csv:1: lists the surgery types"):
            ophnet.load(surgery, ctx)
        with pytest.raises(AdapterError, match=r"tal\.json: cannot tell phases from operations"):
            ophnet.load(renamed, ctx)
        with pytest.raises(AdapterError, match=r"other\.csv:1: header 'id,begin,finish'"):
            ophnet.load(other, ctx)


@pytest.mark.parametrize(
    ("row", "fragments"),
    [
        ("case_0002,11.33,abc,train,0,6,8", (":3: end", "'abc'", "seconds")),
        ("case_0002,15.23,11.33,train,0,6,8", (":3:", "reversed")),
        ("case_0002,-1,15.23,train,0,6,8", (":3:", "before 0")),
        ("case_0002,11.33,15.23,train,0,6", (":3:", "6 fields; expected 7")),
        ("case_0002,11.33,15.23,dev,0,6,8", (":3: split", "'dev'")),
        ("case_0002,11.33,15.23,val,0,6,8", (":3: split", "'val' but an earlier row of 'case_0002' says 'train'")),
        ("case_0002,11.33,15.23,train,0,6,x8", (":3: operation_id", "'x8'", "class id")),
        ("case_0002,11.33,15.23,train,,6,8", (":3: surgery_id", "''")),
        (",11.33,15.23,train,0,6,8", (":3: video_id", "empty")),
    ],
)
def test_ophnet_csv_errors_name_the_line(tmp_path: Path, row: str, fragments: tuple[str, ...]) -> None:
    rows = [*OPH_OPERATIONS[:2], row, *OPH_OPERATIONS[3:]]
    path = _csv(tmp_path / "OphNet2024_loca_challenge.csv", rows, bom=True)
    videos = _by_id(_faulty(ophnet, path, *fragments))
    # a skipped row still takes its index, so the ids stay those of the official trimmed clips
    kept = ["case_0002/0", "case_0002/2"] if row.startswith("case_0002") else ["case_0002/0", "case_0002/1"]
    assert [s.source_id for s in videos["case_0002"].segments] == kept
    assert len(videos["case_0013"].segments) == 2


def test_ophnet_json_errors_name_the_json_path(tmp_path: Path) -> None:
    data = json.loads(json.dumps(OPH_PHASE_JSON))
    data["database"]["case_0002"]["duration"] = 299.38
    data["database"]["case_0002"]["annotations"][1]["segment"] = [11.33]
    path = _write(tmp_path / "OphNet2024_phase.json", json.dumps(data))
    videos = _by_id(_faulty(ophnet, path, "database.case_0002.annotations[1].segment", "[start, end] pair"))
    assert [s.source_id for s in videos["case_0002"].segments] == ["case_0002/0"] and "case_0013" in videos


# --- MultiBypass140 --------------------------------------------------------------------------------------

BBP01 = {
    "phases": [{"start": 13301, "end": 1371912, "label_name": "preparation", "label_id": 0},
               {"start": 53583, "end": 75743, "label_name": "out_of_body", "label_id": 12},
               {"start": 1371912, "end": 2090539, "label_name": "gastric_pouch_creation", "label_id": 1},
               {"start": 1423834, "end": 1424954, "label_name": "severe_index", "label_id": 13}],
    "steps": [{"start": 13301, "end": 79263, "label_name": "s0_null_step", "label_id": 0},
              {"start": 79263, "end": 127825, "label_name": "s1_cavity_exploration", "label_id": 1},
              {"start": 127825, "end": 310401, "label_name": "s2_trocar_placement", "label_id": 2}],
}
SBP01 = {
    "phases": [{"start": 0, "end": 905000, "label_name": "preparation", "label_id": 0},
               {"start": 905000, "end": 2000500, "label_name": "gastric_pouch_creation", "label_id": 1}],
    "steps": [{"start": 0, "end": 120000, "label_name": "s1_cavity_exploration", "label_id": 1},
              {"start": 120000, "end": 300000, "label_name": "s2_trocar_placement", "label_id": 2}],
}


def _label_file(path: Path, data: dict) -> Path:
    return _write(path, json.dumps(data))  # one line, no trailing newline, as the official files


def test_multibypass140_phases_and_steps(tmp_path: Path) -> None:
    _label_file(tmp_path / "labels_bern" / "BBP01.mp4.json", BBP01)
    _label_file(tmp_path / "labels_strasbourg" / "SBP01.mp4.json", SBP01)
    _write(tmp_path / "splits_from_pickles.json", json.dumps({"bern": {"val": ["BBP01"]}}))  # not a label file
    ctx = LoadContext(LoadOptions(strict=True))  # the deliberate skips are no error
    videos = _by_id(_load(bypass, tmp_path, ctx))
    assert list(videos) == ["BBP01", "SBP01"]
    bern = videos["BBP01"]
    assert (bern.video, bern.duration, bern.source, bern.split) == ("BBP01.mp4", None, "multibypass140", None)
    assert [(s.start, s.end, s.kind, s.label, s.text) for s in bern.segments] == [
        (13.301, 1371.912, "phase", "preparation", "The preparation phase."),
        (53.583, 75.743, "event", "out_of_body", "The camera is outside the patient's body."),
        (1371.912, 2090.539, "phase", "gastric_pouch_creation", "The gastric pouch creation phase."),
        (79.263, 127.825, "event", "cavity_exploration", "Cavity exploration."),
        (127.825, 310.401, "event", "trocar_placement", "Trocar placement."),
    ]
    assert [s.source_id for s in bern.segments] == ["BBP01/phases/0", "BBP01/phases/1", "BBP01/phases/2",
                                                    "BBP01/steps/1", "BBP01/steps/2"]
    assert bern.segments[2].meta == {"name": "gastric pouch creation", "label_id": 1}
    assert bern.segments[3].meta == {"name": "cavity exploration", "label_id": 1,
                                     "label_name": "s1_cavity_exploration"}
    assert ctx.records == 2 + 7 + 4
    assert ctx.counts()["skipped"] == {"null step": 1, "severe_index marker": 1}
    assert {n.record for n in ctx.notes} == {"BBP01/phases/3", "BBP01/steps/0"}
    assert [v.video_id for v in _load(bypass, tmp_path / "labels_strasbourg" / "SBP01.mp4.json")] == ["SBP01"]
    assert bypass.video_id_of(Path("BBP07.json")) == "BBP07"


@pytest.mark.parametrize(
    ("where", "change", "fragments"),
    [
        (("phases", 1), {"end": 800}, ("phases[1]", "reversed")),
        (("phases", 1), {"start": -5}, ("phases[1]", "before 0")),
        (("steps", 0), {"end": "120000"}, ("steps[0].end", "'120000'", "milliseconds")),
        (("steps", 1), {"label_name": None}, ("steps[1].label_name", "non-empty string")),
        (("steps", 1), {"label_id": -1}, ("steps[1].label_id", "class id")),
        (("phases", 0), {"label_id": True}, ("phases[0].label_id", "class id")),
    ],
)
def test_multibypass140_errors_name_the_json_path(tmp_path: Path, where: tuple[str, int], change: dict,
                                                  fragments: tuple[str, ...]) -> None:
    data = json.loads(json.dumps(SBP01))
    data[where[0]][where[1]].update(change)
    path = _label_file(tmp_path / "SBP01.mp4.json", data)
    [video] = _faulty(bypass, path, *fragments)
    assert len(video.segments) == 3  # the other three records load


def test_multibypass140_broken_file_is_skipped_not_the_folder(tmp_path: Path) -> None:
    _label_file(tmp_path / "labels_bern" / "BBP02.mp4.json", SBP01)
    broken = _write(tmp_path / "labels_bern" / "BBP03.mp4.json", '{"phases": [{"start": 0, "end": }]}')
    ctx = LoadContext()
    assert [v.video_id for v in _load(bypass, tmp_path, ctx)] == ["BBP02"]
    [note] = ctx.notes
    assert (note.action, note.record) == ("skipped", "BBP03.mp4.json") and note.where.startswith(f"{broken}:1")
    with pytest.raises(AdapterError, match=r"BBP03\.mp4\.json:1: invalid JSON"):
        _load(bypass, tmp_path, LoadContext(LoadOptions(strict=True)))
    _label_file(broken, {"phases": [], "stages": []})
    with pytest.raises(AdapterError, match=r"BBP03\.mp4\.json: missing field 'steps'"):
        _load(bypass, broken, LoadContext(LoadOptions(strict=True)))
