"""AutoLaparo and Cataract-101 phase adapters: files in each dataset's exact layout → phase segments in seconds;
a malformed record is skipped and noted by default, an error naming its file and line with strict."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from medscope.suite.adapters import AdapterError, autolaparo, cataract101
from medscope.suite.loading import LoadContext, LoadOptions
from medscope.suite.records import VideoAnnotation

Loader = Callable[[Path, LoadContext], list[VideoAnnotation]]


def _write(path: Path, content: str, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="ascii", newline=newline) as handle:  # newline: the file's own line ending
        handle.write(content)
    return path


def _skips(load: Loader, path: Path, file: Path, line: int | None, reason: str, *fragments: str,
           **options: object) -> list[VideoAnnotation]:
    """Strict: loading ``path`` raises an ``AdapterError`` naming ``file``, ``line`` and every fragment. Lenient:
    the same fault is one note (file, line, reason) of a skipped record and the rest loads; returns that."""
    where = f"{file}:{line}" if line is not None else str(file)
    with pytest.raises(AdapterError) as info:
        load(path, LoadContext(LoadOptions(strict=True, **options)))  # type: ignore[arg-type]
    message = str(info.value)
    for fragment in (where, *fragments):
        assert fragment in message, f"{fragment!r} not in {message!r}"
    ctx = LoadContext(LoadOptions(**options))  # type: ignore[arg-type]
    videos = load(path, ctx)
    assert [(n.action, n.reason, n.detail) for n in ctx.notes] == [("skipped", reason, message)]
    assert ctx.notes[0].where.startswith(where)
    return videos


def _windows(video: VideoAnnotation) -> list[tuple[float, float, str | None]]:
    return [(s.start, s.end, s.label) for s in video.segments]


# --- AutoLaparo ------------------------------------------------------------------------------------------


def _labels(folder: Path, number: str, phases: list[tuple[int, int]]) -> Path:
    """``label_NN.txt`` as the official files are: ``Frame  Phase`` (two spaces), then ``NNNN<TAB>id``, 1-based."""
    rows, frame = ["Frame  Phase"], 1
    for phase, seconds in phases:
        rows += [f"{frame + k:04d}\t{phase}" for k in range(seconds)]
        frame += seconds
    return _write(folder / f"label_{number}.txt", "\n".join(rows) + "\n")


def test_autolaparo_phase_runs_in_seconds(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    _labels(labels, "01", [(2, 3), (3, 2), (2, 4), (4, 1)])  # phases recur; 01 has no Preparation
    _labels(labels, "12", [(1, 5), (2, 5)])
    _labels(labels, "15", [(6, 2), (7, 3)])
    ctx = LoadContext()
    videos = autolaparo.load(tmp_path, ctx)
    assert ctx.notes == [] and ctx.records == 3
    assert [(v.video_id, v.video, v.duration, v.split, v.source) for v in videos] == [
        ("01", "01.mp4", 10.0, "train", "autolaparo"),
        ("12", "12.mp4", 10.0, "val", "autolaparo"),
        ("15", "15.mp4", 5.0, "test", "autolaparo"),
    ]
    one = videos[0]
    # row 0001 labels the first second, [0, 1): a run of rows k..m is [k - 1, m)
    assert _windows(one) == [
        (0.0, 3.0, "Dividing Ligament and Peritoneum"),
        (3.0, 5.0, "Dividing Uterine Vessels and Ligament"),
        (5.0, 9.0, "Dividing Ligament and Peritoneum"),
        (9.0, 10.0, "Transecting the Vagina"),
    ]
    assert [s.kind for s in one.segments] == ["phase"] * 4
    assert [s.source_id for s in one.segments] == ["label_01:2", "label_01:5", "label_01:7", "label_01:11"]
    assert one.segments[1].text == "The dividing uterine vessels and ligament phase."
    assert one.segments[1].meta == {"name": "dividing uterine vessels and ligament"}
    assert [s.text for s in videos[1].segments] == ["The preparation phase.",
                                                   "The dividing ligament and peritoneum phase."]
    assert [(s.start, s.end, s.meta["name"]) for s in videos[2].segments] == [(0.0, 2.0, "suturing"),
                                                                              (2.0, 5.0, "washing")]


def test_autolaparo_one_file_and_no_frame_rate(tmp_path: Path) -> None:
    path = _labels(tmp_path, "21", [(1, 2), (5, 2)])
    plain = autolaparo.load(path, LoadContext())
    # the labels are one a second whatever the video's rate: --fps does not change them
    [video] = autolaparo.load(path, LoadContext(LoadOptions(fps=25.0)))
    assert plain == [video] and (video.video_id, video.split, video.duration) == ("21", "test", 4.0)
    assert _windows(video) == [(0.0, 2.0, "Preparation"), (2.0, 4.0, "Specimen Removal")]
    [other] = autolaparo.load(_labels(tmp_path, "22", [(7, 1)]).rename(tmp_path / "hyst.txt"), LoadContext())
    assert (other.video_id, other.video, other.split) == ("hyst", "hyst.mp4", None)
    assert autolaparo.split("10") == "train" and autolaparo.split("11") == "val" and autolaparo.split("x") is None


@pytest.mark.parametrize(
    ("rows", "line", "reason", "fragments"),
    [
        ("0001\t2\n000x\t2\n", 3, "frame is not an integer", ("'000x' is not an integer",)),
        ("0001\t2\n0002\t8\n", 3, "unknown phase", ("phase '8'", "1..7")),
        ("0001\t2\n0002\tWashing\n", 3, "unknown phase", ("phase 'Washing'",)),
        ("0000\t2\n0001\t2\n", 2, "frames not consecutive", ("frame 0000", "0001, 0002")),
        ("0001\t2\n0002\t2\n0004\t3\n", 4, "frames not consecutive", ("frame 0004 after frame 0002",)),
        ("0001\t2\n0001\t3\n", 3, "frames not increasing", ("frame 1 after frame 1",)),
        ("0001\t2\n0002\n", 3, "wrong number of fields", ("1 fields",)),
    ],
)
def test_autolaparo_bad_file_is_skipped_and_named(tmp_path: Path, rows: str, line: int, reason: str,
                                                 fragments: tuple[str, ...]) -> None:
    _labels(tmp_path, "01", [(1, 2), (2, 2)])
    bad = _write(tmp_path / "label_02.txt", "Frame  Phase\n" + rows)
    videos = _skips(autolaparo.load, tmp_path, bad, line, reason, *fragments)
    assert [(v.video_id, v.duration) for v in videos] == [("01", 4.0)]


def test_autolaparo_bad_header_and_empty_folder(tmp_path: Path) -> None:
    bad = _write(tmp_path / "labels" / "label_03.txt", "Frame  Phase  Extra\n0001\t2\n")
    _skips(autolaparo.load, bad, bad, 1, "unexpected header", "header", "'Frame  Phase'")
    bad.unlink()
    with pytest.raises(AdapterError, match=r"no label_\*\.txt files"):
        autolaparo.load(tmp_path / "labels", LoadContext())
    with pytest.raises(FileNotFoundError):
        autolaparo.load(tmp_path / "missing.txt", LoadContext())


# --- Cataract-101 ----------------------------------------------------------------------------------------

VIDEOS = "VideoID;Frames;FPS;Surgeon;Experience\n269;1000;25;4;1\n350;600;30;3;2\n356;500;25;2;2"  # no final \n
PHASES = ("Phase;Meaning\n1;Incision\n2;Viscous agent injection\n3;Rhexis\n4;Hydrodissection\n"
          "5;Phacoemulsificiation\n6;Irrigation and aspiration\n7;Capsule polishing\n8;Lens implant setting-up\n"
          "9;Viscous agent removal\n10;Tonifying and antibiotics\n")
ANNOTATIONS = ["VideoID;FrameNo;Phase", "269;50;1", "269;100;2", "269;250;3", "269;900;10", "269;950;10",
               "350;0;1", "350;300;5", "350;450;8"]


def _cataract(folder: Path, annotations: list[str] = ANNOTATIONS, videos: str = VIDEOS,
              phases: str | None = PHASES) -> Path:
    _write(folder / "videos.csv", videos)
    if phases is not None:
        _write(folder / "phases.csv", phases)
    _write(folder / "annotations.csv", "\n".join(annotations) + "\n")
    return folder


def test_cataract101_phase_starts_in_seconds(tmp_path: Path) -> None:
    ctx = LoadContext()
    videos = cataract101.load(_cataract(tmp_path), ctx)
    assert ctx.notes == [] and ctx.records == len(ANNOTATIONS) - 1
    # 356 has no annotation row: left out; split: none in this dataset
    assert [(v.video_id, v.video, v.duration, v.split, v.source) for v in videos] == [
        ("case_269", "case_269.mp4", 40.0, None, "cataract101"),
        ("case_350", "case_350.mp4", 20.0, None, "cataract101"),
    ]
    first, second = videos
    # 0..2 s before the first row is unannotated; the repeated 10 is one phase to the video's end
    assert _windows(first) == [(2.0, 4.0, "Incision"), (4.0, 10.0, "Viscous agent injection"),
                               (10.0, 36.0, "Rhexis"), (36.0, 40.0, "Tonifying and antibiotics")]
    assert [s.source_id for s in first.segments] == ["annotations:2", "annotations:3", "annotations:4",
                                                     "annotations:5"]
    assert {s.kind for s in first.segments} == {"phase"}
    assert first.segments[3].text == "The tonifying and antibiotics phase."
    # video 350 is 30 fps in videos.csv: its own rate, per video
    assert _windows(second) == [(0.0, 10.0, "Incision"), (10.0, 15.0, "Phacoemulsificiation"),
                                (15.0, 20.0, "Lens implant setting-up")]
    phaco, lens = second.segments[1:]
    assert (phaco.text, phaco.meta) == ("The phacoemulsification phase.", {"name": "phacoemulsification"})
    assert (lens.text, lens.meta, lens.source_id) == ("The lens implant setting-up phase.",
                                                      {"name": "lens implant setting-up"}, "annotations:9")


def test_cataract101_file_path_crlf_and_no_phases_csv(tmp_path: Path) -> None:
    reference = cataract101.load(_cataract(tmp_path / "a"), LoadContext())
    folder = _cataract(tmp_path / "b", phases=None)  # phases.csv is optional: the official names
    _write(folder / "annotations.csv", "\n".join(ANNOTATIONS), newline="\r\n")  # CRLF, no final newline
    assert cataract101.load(folder / "annotations.csv", LoadContext()) == reference


def test_cataract101_fps_option_overrides_videos_csv(tmp_path: Path) -> None:
    ctx = LoadContext(LoadOptions(fps=50.0))
    first, second = cataract101.load(_cataract(tmp_path), ctx)
    assert first.duration == 20.0 and _windows(first)[0] == (1.0, 2.0, "Incision")
    assert second.duration == 12.0
    assert [(n.action, n.reason, n.where, n.record) for n in ctx.notes] == [
        ("disagrees", "fps disagrees with videos.csv", f"{tmp_path / 'videos.csv'}:2", "case_269"),
        ("disagrees", "fps disagrees with videos.csv", f"{tmp_path / 'videos.csv'}:3", "case_350"),
    ]


@pytest.mark.parametrize(
    ("row", "reason", "fragments"),
    [
        ("269;1x0;2", "not an integer", ("FrameNo", "'1x0'")),
        ("999;120;2", "unknown video", ("video 999 is not in videos.csv",)),
        ("269;40;2", "frames not increasing", ("frame 40 after frame 50",)),
        ("269;50;3", "frames not increasing", ("frame 50 after frame 50",)),
        ("269;1000;2", "frame outside the video", ("1000 frames",)),
        ("269;120;11", "unknown phase", ("phase 11",)),
        ("269;120", "wrong number of fields", ("2 fields",)),
    ],
)
def test_cataract101_bad_row_is_skipped_and_named(tmp_path: Path, row: str, reason: str,
                                                  fragments: tuple[str, ...]) -> None:
    folder = _cataract(tmp_path, [*ANNOTATIONS[:2], row, *ANNOTATIONS[2:]])  # the bad row is line 3
    videos = _skips(cataract101.load, folder, folder / "annotations.csv", 3, reason, *fragments)
    assert [_windows(v) for v in videos] == [_windows(v) for v in cataract101.load(_cataract(tmp_path / "ok"),
                                                                                    LoadContext())]
    assert videos[0].segments[1].source_id == "annotations:4"  # the lines after it keep their own numbers


def test_cataract101_bad_videos_row_is_skipped_and_named(tmp_path: Path) -> None:
    folder = _cataract(tmp_path, videos=VIDEOS.replace("356;500;25", "356;five hundred;25"))
    videos = _skips(cataract101.load, folder, folder / "videos.csv", 4, "not an integer", "Frames",
                    "'five hundred'")
    assert [v.video_id for v in videos] == ["case_269", "case_350"]


def test_cataract101_bad_phases_csv_falls_back_to_the_official_names(tmp_path: Path) -> None:
    folder = _cataract(tmp_path, phases=PHASES.replace("3;Rhexis", "three;Rhexis"))
    videos = _skips(cataract101.load, folder, folder / "phases.csv", 4, "not an integer", "'three'")
    assert _windows(videos[0])[2] == (10.0, 36.0, "Rhexis")


def test_cataract101_whole_file_faults_raise(tmp_path: Path) -> None:
    folder = _cataract(tmp_path, ["VideoID,FrameNo,Phase", "269,50,1"])
    for options in (LoadOptions(), LoadOptions(strict=True)):
        with pytest.raises(AdapterError, match=r"annotations\.csv:1: header .*'VideoID;FrameNo;Phase'"):
            cataract101.load(folder, LoadContext(options))
    _write(folder / "videos.csv", "VideoID;Length\n269;1000")
    with pytest.raises(AdapterError, match=r"videos\.csv:1: header 'VideoID;Length'"):
        cataract101.load(folder / "annotations.csv", LoadContext())
    (folder / "videos.csv").unlink()
    with pytest.raises(AdapterError, match=r"videos\.csv: not found"):
        cataract101.load(folder, LoadContext())
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterError, match=r"no annotations\.csv"):
        cataract101.load(tmp_path / "empty", LoadContext())
    with pytest.raises(FileNotFoundError):
        cataract101.load(tmp_path / "missing.csv", LoadContext())


def test_cataract101_readable_names() -> None:
    assert cataract101.readable("Phacoemulsificiation") == "phacoemulsification"
    assert cataract101.readable("Lens implant setting-up") == "lens implant setting-up"
    assert cataract101.readable("IOL  implantation") == "IOL implantation"
