"""Caption metrics equal pycocoevalcap's own scorers on the same tokenised inputs; METEOR is None without Java."""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import pytest

pytest.importorskip("pycocoevalcap")

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from medscope.eval import captions
from medscope.eval.captions import (
    EMPTY_PREDICTION,
    JAVA_HINT,
    CaptionScores,
    caption_scores,
    simple_tokenize,
)

HAS_JAVA = shutil.which("java") is not None
needs_java = pytest.mark.skipif(not HAS_JAVA, reason="no `java` on PATH: apt-get install default-jre-headless")

PREDICTIONS = {
    "v1": "The surgeon grasps the gallbladder with a grasper.",
    "v2": "Clips are applied to the cystic duct, then it is cut.",
    "v3": "The lens is implanted into the capsular bag.",
    "v4": "Irrigation clears the operative field.",
}
REFERENCES = {
    "v1": ["The surgeon grasps the gallbladder fundus with forceps.", "A grasper retracts the gallbladder."],
    "v2": ["The cystic duct is clipped and then divided with scissors."],
    "v3": ["An intraocular lens is inserted into the capsular bag.", "The IOL is implanted in the bag."],
    "v4": ["Suction and irrigation clean the field.", "The field is irrigated."],
}


def _value(scores: CaptionScores, name: str) -> float:
    value = scores[name]
    assert value is not None, f"{name} is missing: {scores.unavailable}"
    return value


def _direct(gts: dict[str, list[str]], res: dict[str, list[str]]) -> dict[str, float]:
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)
    return {"bleu4": 100 * bleu[3], "cider": 100 * cider, "rouge_l": 100 * rouge}


@pytest.fixture(scope="module")
def ptb_scores() -> CaptionScores:
    """One call with METEOR: the jar's start (a few seconds) is paid once for the module."""
    if not HAS_JAVA:
        pytest.skip("no `java` on PATH: apt-get install default-jre-headless")
    return caption_scores(PREDICTIONS, REFERENCES)


@needs_java
def test_ptb_scores_equal_pycocoevalcap_directly(ptb_scores: CaptionScores) -> None:
    assert ptb_scores.tokenizer == "ptb" and ptb_scores.n == 4 and ptb_scores.unavailable == {}
    gts = PTBTokenizer().tokenize({k: [{"caption": c} for c in refs] for k, refs in REFERENCES.items()})
    res = PTBTokenizer().tokenize({k: [{"caption": p}] for k, p in PREDICTIONS.items()})
    assert gts["v1"][1] == "a grasper retracts the gallbladder" and res["v2"] == [
        "clips are applied to the cystic duct then it is cut"
    ]
    for name, value in _direct(gts, res).items():
        assert ptb_scores[name] == pytest.approx(value, abs=1e-9), name
    assert 0 < _value(ptb_scores, "bleu4") < 100 and _value(ptb_scores, "cider") > 0

    # METEOR: pycocoevalcap's own Meteor object (the process caption_scores kept) on the same tokenised inputs.
    assert captions._meteor_scorer is not None
    meteor, _ = captions._meteor_scorer.compute_score(gts, res)
    assert ptb_scores["meteor"] == pytest.approx(100 * meteor, abs=1e-9)
    assert 0 < _value(ptb_scores, "meteor") < 100
    assert set(ptb_scores) == {"bleu4", "cider", "meteor", "rouge_l"}
    assert ptb_scores.to_json()["tokenizer"] == "ptb"


def test_simple_tokenisation_equals_pycocoevalcap_directly() -> None:
    scores = caption_scores(PREDICTIONS, REFERENCES, tokenizer="simple", meteor=False)
    assert scores.tokenizer == "simple"
    assert scores["meteor"] is None and "not requested" in scores.unavailable["meteor"]
    tokens = simple_tokenize("Clips are applied to the cystic-duct, then...")
    assert tokens == "clips are applied to the cystic duct then"
    gts = {k: [simple_tokenize(c) for c in refs] for k, refs in REFERENCES.items()}
    res = {k: [simple_tokenize(p)] for k, p in PREDICTIONS.items()}
    for name, value in _direct(gts, res).items():
        assert scores[name] == pytest.approx(value, abs=1e-9), name


@pytest.mark.parametrize("tokenizer", ["auto", "simple"])
def test_identical_captions_score_top(tokenizer: str) -> None:
    same = {k: refs[0] for k, refs in REFERENCES.items()}
    scores = caption_scores(same, {k: [v] for k, v in same.items()}, tokenizer=tokenizer, meteor=False)
    assert scores["bleu4"] == pytest.approx(100.0, abs=1e-4)
    assert scores["rouge_l"] == pytest.approx(100.0)


@needs_java
def test_empty_predictions_do_not_crash(ptb_scores: CaptionScores) -> None:
    predictions = {**PREDICTIONS, "v2": "", "v3": " ...  "}  # empty, and punctuation only (empty once tokenised)
    scores = caption_scores(predictions, REFERENCES)
    assert all(isinstance(scores[m], float) for m in ("bleu4", "cider", "meteor", "rouge_l"))
    assert any(EMPTY_PREDICTION in note and "2 empty" in note for note in scores.notes)
    worse = caption_scores(predictions, REFERENCES, tokenizer="simple", meteor=False)
    assert _value(worse, "rouge_l") < _value(ptb_scores, "rouge_l")


def test_meteor_is_none_not_zero_without_java(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    with pytest.warns(RuntimeWarning, match="METEOR needs Java"):
        scores = caption_scores(PREDICTIONS, REFERENCES)
    assert scores["meteor"] is None
    assert JAVA_HINT in scores.unavailable["meteor"]
    assert scores.tokenizer == "simple" and any("simple tokenisation" in n for n in scores.notes)
    assert _value(scores, "bleu4") > 0 and scores.to_json()["meteor"] is None
    with pytest.raises(RuntimeError, match="tokenizer='ptb'"):
        caption_scores(PREDICTIONS, REFERENCES, tokenizer="ptb", meteor=False)


def _fake_java(folder: Path, body: str) -> None:
    java = folder / "java"
    java.write_text(f"#!/bin/sh\n{body}\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("body", ["echo 'Error: Could not create the Java Virtual Machine.' >&2; exit 1",
                                  "exec sleep 30"], ids=["crashes", "hangs"])
def test_meteor_is_none_when_java_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, body: str) -> None:
    _fake_java(tmp_path, body)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(captions, "_meteor_scorer", None)  # do not reuse a working jar started by another test
    start = time.monotonic()
    with pytest.warns(RuntimeWarning, match="METEOR"):
        scores = caption_scores(PREDICTIONS, REFERENCES, tokenizer="simple", meteor_timeout=1.0)
    assert time.monotonic() - start < 10
    assert scores["meteor"] is None and JAVA_HINT in scores.unavailable["meteor"]
    if body.startswith("echo"):
        assert "Could not create the Java Virtual Machine" in scores.unavailable["meteor"]
        # the PTB tokenizer fails with the same java: the simple tokenisation takes over, and says so
        auto = caption_scores(PREDICTIONS, REFERENCES, meteor=False)
        assert auto.tokenizer == "simple" and auto.notes and "PTB" in auto.notes[0]
    else:
        assert "did not answer within 1 s" in scores.unavailable["meteor"]
    assert captions._meteor_scorer is None


def test_mismatched_or_empty_inputs_are_errors() -> None:
    with pytest.raises(ValueError, match="same ids"):
        caption_scores({"v1": "x"}, {"v2": ["y"]}, meteor=False)
    with pytest.raises(ValueError, match="non-empty list"):
        caption_scores({"v1": "x"}, {"v1": []}, meteor=False)
    with pytest.raises(ValueError, match="no predictions"):
        caption_scores({}, {}, meteor=False)
