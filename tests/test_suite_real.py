"""Suite builds from official-layout annotation files with real (stand-in) videos in mixed containers: bad
records skipped and counted, overruns clamped, strict errors, multi-window samples that score 1.0 against
themselves, portable sample files, and phase sources that give questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medscope.eval.metrics import answer_iou, answer_score
from medscope.eval.runner import EvalConfig, evaluate
from medscope.suite.adapters import AdapterError
from medscope.suite.build import BuildConfig, build
from medscope.suite.loading import LoadOptions
from medscope.suite.records import Sample, read_jsonl
from medscope.video.standin import write_standin

# Charades-STA test lines (official layout) with the faults the real files have:
CHARADES = "\n".join([
    "AO8RW 0.0 6.9##a person is putting a book on a shelf.",
    "AO8RW 12.5 18.0##person begins to play on a phone.",
    "AO8RW 25.0 29.5##a person is putting a book on a shelf.",  # the same sentence again: one 2-window sample
    "Y6R7T 11.2 17.8##a person opens the door.",
    "Y6R7T 20.1 31.4##person takes a towel from the closet.",  # ends 1.4 s after the 30 s video: clamped
    "Y6R7T 14.0 9.0##person closes the door.",  # reversed, as 4 official train lines: skipped
    "Y6R7T 30.5 32.0##person leaves.",  # starts after the video's end: skipped
    "KAE9W 0 3##the person sits down.",  # no video for KAE9W: skipped
    "Q1W2E 2.0 6.0##a person laughs.",
    "Q1W2E 9.0 14.0##a person drinks from a cup.",
]) + "\n"


@pytest.fixture(scope="module")
def charades(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("charades")
    (root / "charades_sta_test.txt").write_text(CHARADES)
    videos = root / "videos"
    write_standin(videos / "AO8RW.mp4", 32.0)
    write_standin(videos / "Y6R7T.webm", 30.0)  # found by stem, whatever the container
    write_standin(videos / "sub" / "Q1W2E.mkv", 20.0)
    return root


def _reference_scores_one(samples: list[Sample]) -> None:
    for s in samples:
        assert answer_score(s.answer, answer=s.answer, task=s.task, evidence=s.evidence) == 1.0, s
        if s.task == "grounding":
            assert answer_iou(s.answer, s.evidence) == pytest.approx(1.0), s


def test_charades_build_skips_clamps_and_counts(charades: Path, tmp_path: Path) -> None:
    out = tmp_path / "suite"
    # consistency alone: the official split as published
    table = build(BuildConfig(source="charades", annotations=str(charades / "charades_sta_test.txt"),
                              videos=str(charades / "videos"), out=str(out), workers=1, filters=("consistency",)))
    funnel = json.loads((out / "funnel.json").read_text())
    assert funnel["samples"] == table and funnel["records"]["read"] == 10
    assert funnel["records"]["skipped"] == {"reversed window": 1, "video not found": 1,
                                            "window after the video": 1}
    assert funnel["records"]["clamped"] == {"window overruns the video": 1}
    notes = [json.loads(line) for line in (out / "load_notes.jsonl").read_text().splitlines()]
    reversed_note = next(n for n in notes if n["reason"] == "reversed window")
    assert reversed_note["record"] == "charades_sta_test:6" and "charades_sta_test.txt:6" in reversed_note["where"]
    assert next(n for n in notes if n["reason"] == "video not found")["record"] == "KAE9W"
    card = (out / "README.md").read_text()
    assert "reversed window" in card and "window overruns the video" in card

    samples = list(read_jsonl(out / "samples.jsonl"))
    assert {Path(s.video).name for s in samples} == {"AO8RW.mp4", "Y6R7T.webm", "Q1W2E.mkv"}
    assert all(s.split == "test" and s.source_id for s in samples)
    shelf = [s for s in samples if s.task == "grounding" and "book on a shelf" in s.question]
    assert len(shelf) == 1 and shelf[0].evidence == [[0.0, 6.9], [25.0, 29.5]]
    assert shelf[0].answer == "[[0.0, 6.9], [25.0, 29.5]]"
    assert shelf[0].source_id == "charades_sta_test:1,charades_sta_test:3"
    towel = next(s for s in samples if "towel" in s.question and s.task == "grounding")
    assert towel.evidence == [[20.1, 30.0]]
    _reference_scores_one(samples)
    rows = (out / "samples.jsonl").read_text().splitlines()
    assert all(not Path(json.loads(r)["video"]).is_absolute() for r in rows)  # relative to the samples file


def test_strict_build_names_the_file_line_and_problem(charades: Path, tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match=r"charades_sta_test\.txt:6: window \[14, 9\] is reversed"):
        build(BuildConfig(source="charades", annotations=str(charades / "charades_sta_test.txt"),
                          videos=str(charades / "videos"), out=str(tmp_path / "s"), workers=1,
                          load=LoadOptions(strict=True)))
    assert not (tmp_path / "s" / "samples.jsonl").exists()


def test_a_build_with_no_videos_says_why(charades: Path, tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match=r"no samples from .*4 video not found"):
        build(BuildConfig(source="charades", annotations=str(charades / "charades_sta_test.txt"),
                          videos=str(tmp_path), out=str(tmp_path / "s"), workers=1))


def test_eval_runs_from_another_folder(charades: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite = tmp_path / "suite"
    build(BuildConfig(source="charades", annotations=str(charades / "charades_sta_test.txt"),
                      videos=str(charades / "videos"), out=str(suite), workers=1, trajectories=False,
                      filters=("consistency",)))
    assert not (suite / "trajectories.jsonl").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    runs = evaluate(EvalConfig(samples="../suite/samples.jsonl", out="eval", backend="oracle", baseline="none"))
    grounding = [r for r in runs["agent"] if r["task"] == "grounding"]
    assert grounding and all(r["metrics"]["iou"] == pytest.approx(1.0) for r in grounding)
    assert all(r["metrics"]["accuracy"] == 1.0 for r in runs["agent"])
    assert {r["answer_parser"] for r in grounding} == {"json"}


def _cholec80(root: Path, video_id: str, runs: list[tuple[str, int]], fps: int) -> None:
    rows, frame = ["Frame\tPhase"], 0
    for phase, seconds in runs:
        rows += [f"{frame + k}\t{phase}" for k in range(seconds * fps)]
        frame += seconds * fps
    (root / "phase_annotations").mkdir(parents=True, exist_ok=True)
    (root / "phase_annotations" / f"{video_id}-phase.txt").write_text("\n".join(rows) + "\n")


def test_cholec80_phases_give_questions_at_the_videos_frame_rate(tmp_path: Path) -> None:
    root = tmp_path / "cholec80"
    phases = [("Preparation", 20), ("CalotTriangleDissection", 60), ("ClippingCutting", 15),
              ("GallbladderDissection", 50), ("GallbladderPackaging", 10), ("CleaningCoagulation", 25),
              ("GallbladderRetraction", 10)]
    _cholec80(root, "video01", phases, fps=4)
    write_standin(root / "videos" / "video01.mp4", 190.0, fps=4)  # the frame rate comes from here
    out = tmp_path / "suite"
    build(BuildConfig(source="cholec80", annotations=str(root), videos=str(root / "videos"), out=str(out),
                      workers=1, filters=("consistency",)))
    samples = list(read_jsonl(out / "samples.jsonl"))
    templates = {s.meta["template"] for s in samples}
    assert templates == {"ground_phase", "phase_at", "phase_next", "phase_length"}
    clipping = next(s for s in samples if s.meta["template"] == "ground_phase" and "clipping" in s.question)
    assert clipping.evidence == [[80.0, 95.0]] and clipping.source_id == "video01"
    _reference_scores_one(samples)
    # with every filter, the phase at a time goes (an overview frame shows it); when-questions stay
    build(BuildConfig(source="cholec80", annotations=str(root), videos=str(root / "videos"), out=str(out),
                      workers=1))
    kept = {s.meta["template"] for s in read_jsonl(out / "samples.jsonl")}
    assert "ground_phase" in kept and "phase_at" not in kept
    with pytest.raises(AdapterError, match=r"no samples.*1 fps unknown"):  # no video, no --fps: nothing assumed
        build(BuildConfig(source="cholec80", annotations=str(root), videos=str(tmp_path / "none"),
                          out=str(tmp_path / "s2"), workers=1))


def test_every_kind_of_question_is_answered_by_its_own_reference() -> None:
    """Each template's reference answer scores accuracy 1.0 (and IoU 1.0 when it is a window), whatever the
    source: phases that recur, instruments present in several runs, multi-window queries, sources' own QA."""
    from medscope.suite.qa import generate_samples
    from medscope.suite.records import Segment, VideoAnnotation

    def phase(start: float, end: float, label: str) -> Segment:
        return Segment(start, end, f"The {label} phase.", "phase", label)

    segments = (
        phase(0, 100, "Preparation"), phase(100, 300, "CalotTriangleDissection"), phase(300, 360, "ClippingCutting"),
        phase(360, 380, "CalotTriangleDissection"), phase(380, 530, "GallbladderDissection"),
        phase(530, 600, "GallbladderPackaging"),
        Segment(40, 55, "A hook is in view.", "instrument", "Hook", meta={"name": "hook"}),
        Segment(320, 340, "A hook is in view.", "instrument", "Hook", meta={"name": "hook"}),
        Segment(120, 160, "A grasper enters from the left.", "instrument", "grasper", meta={"side": "left"}),
        Segment(150, 154, "Bleeding appears in the upper-left.", "event", "bleeding", meta={"position": "upper-left"}),
        Segment(410, 413, "Bleeding appears again.", "event", "bleeding"),
        Segment(170, 173, "Smoke rises in the centre.", "event", "smoke", meta={"position": "centre"}),
        Segment(200, 210, "A clip is applied.", "caption"),
        Segment(230, 240, "The duct is cut.", "caption"),
        Segment(250, 262, "The surgeon irrigates.", "caption"),
        Segment(270, 280, "Smoke fills the view.", "caption"),
        Segment(60, 70, "a person opens a door", "query", windows=((60, 70), (500, 520)), source_id="8737"),
        Segment(80, 95, "How to check the collar fit?", "question", source_id="3"),
        Segment(420, 450, "What is the surgeon doing here?", "qa", source_id="a1",
                meta={"answer": "The surgeon dissects the gallbladder from the liver bed.", "task": "grounded_vqa"}),
        Segment(450, 480, "Describe this clip.", "qa", source_id="a2",
                meta={"answer": "A hook dissects tissue while a grasper retracts.", "task": "fine_caption"}),
    )
    annotation = VideoAnnotation("v1", "v1.mp4", 600.0, segments, "test", summary="A cholecystectomy.", split="val")
    samples = generate_samples(annotation, 600.0)
    templates = {s.meta["template"] for s in samples}
    assert templates >= {"ground_phase", "ground_instrument", "ground_label", "ground_text", "ground_question",
                         "phase_at", "phase_next", "phase_length", "source_qa", "mcq_window", "after",
                         "event_where", "instrument_side", "caption", "fine_caption"}
    calot = next(s for s in samples if s.meta["template"] == "ground_phase" and "Calot" in s.question)
    assert calot.evidence == [[100.0, 300.0], [360.0, 380.0]]
    assert calot.answer == "[[100.0, 300.0], [360.0, 380.0]]"
    hook = next(s for s in samples if s.meta["template"] == "ground_instrument")
    assert hook.question.startswith("When is the hook in view?") and hook.evidence == [[40.0, 55.0], [320.0, 340.0]]
    bleeding = next(s for s in samples if s.meta["template"] == "ground_label" and "bleeding" in s.question)
    assert bleeding.evidence == [[150.0, 154.0], [410.0, 413.0]]
    door = next(s for s in samples if s.task == "grounding" and "door" in s.question)
    assert door.evidence == [[60.0, 70.0], [500.0, 520.0]] and door.source_id == "8737"
    qa = {s.task: s for s in samples if s.meta["template"] == "source_qa"}
    assert qa["grounded_vqa"].evidence == [[420.0, 450.0]] and qa["fine_caption"].source_id == "a2"
    assert all(s.split == "val" and s.source_id for s in samples)
    _reference_scores_one(samples)
