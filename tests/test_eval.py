"""Metrics on hand-computed cases, the resumable runner (killed midway and resumed), and the tables."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from medscope.eval import metrics
from medscope.eval.folder import read_lines
from medscope.eval.runner import EvalConfig, evaluate, rescore, run_samples
from medscope.eval.tables import clustered_se, markdown, summarize, write_tables
from medscope.suite.build import BuildConfig, build
from medscope.suite.records import read_jsonl
from medscope.video.synthclin import SynthClinConfig, generate


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 10), (5, 15), 5 / 15),
        ((0, 10), (0, 10), 1.0),
        ((0, 10), (2, 4), 0.2),
        ((0, 10), (10, 20), 0.0),  # touching
        ((0, 10), (30, 40), 0.0),  # disjoint
        ((5, 5), (0, 10), 0.0),  # a moment inside a window has no length to share
        ((5, 5), (5, 5), 1.0),  # the same moment
        ((5, 5), (6, 6), 0.0),
    ],
)
def test_iou(a: tuple[float, float], b: tuple[float, float], expected: float) -> None:
    assert metrics.iou(a, b) == pytest.approx(expected)


def test_set_iou_merges_first() -> None:
    assert metrics.merge([(5, 8), (0, 2), (1, 3), (8, 9)]) == [(0, 3), (5, 9)]
    # A = [0,3] ∪ [5,9] (7 s), B = [2,6] (4 s): intersection 1 + 1 = 2, union 7 + 4 - 2 = 9
    assert metrics.set_iou([(0, 2), (1, 3), (5, 9)], [(2, 6)]) == pytest.approx(2 / 9)
    assert metrics.set_iou([], [(0, 1)]) == 0.0
    assert metrics.set_iou([(0, 4)], [(0, 2), (2, 4)]) == pytest.approx(1.0)


def test_recall_and_miou() -> None:
    ious = [0.1, 0.3, 0.5, 0.69, 0.7, 1.0]
    assert metrics.recall_at(ious, 0.3) == pytest.approx(100 * 5 / 6)
    assert metrics.recall_at(ious, 0.5) == pytest.approx(100 * 4 / 6)
    assert metrics.recall_at(ious, 0.7) == pytest.approx(100 * 2 / 6)
    assert metrics.mean_iou(ious) == pytest.approx(100 * sum(ious) / 6)
    assert metrics.recall_at([], 0.5) == 0.0


def test_short_answer_accuracy() -> None:
    assert metrics.normalize_answer("The Upper-Left  field!") == "upper left field"
    assert metrics.token_f1("a clip in the centre", "clip centre") == pytest.approx(0.8)  # P = 2/3, R = 1
    assert metrics.token_f1("grasper", "hook") == 0.0
    score = metrics.answer_score
    assert score("upper left", answer="Upper-left", task="grounded_vqa", evidence=[]) == 1.0
    assert score("bleeding near the liver edge", answer="bleeding in the lower right", task="grounded_vqa",
                 evidence=[]) == 0.5  # F1 = 2·(1/5·1/4)/(1/5+1/4) is below 0.5, above 0.25
    # Full marks need every word of the reference: half of a two-word label is another label.
    assert score("lower left of the field", answer="lower-left", task="grounded_vqa", evidence=[]) == 1.0
    assert score("upper-left", answer="lower-left", task="grounded_vqa", evidence=[]) == 0.5  # F1 = 0.5
    assert score("gallbladder dissection phase", answer="calot triangle dissection phase", task="grounded_vqa",
                 evidence=[]) == 0.5  # F1 = 4/7
    assert score(None, answer="x", task="grounded_vqa", evidence=[]) == 0.0
    assert score("(B) smoke", answer="B", task="mcq", evidence=[]) == 1.0
    assert score("smoke", answer="B", task="mcq", evidence=[]) == 0.0
    assert score("[10, 20]", answer="[10, 20]", task="grounding", evidence=[[12, 20]]) == 1.0
    assert score("[0, 12]", answer="x", task="grounding", evidence=[[10, 20]]) == 0.5
    assert score("[30, 40]", answer="x", task="grounding", evidence=[[10, 20]]) == 0.0


def test_clustered_standard_error() -> None:
    # two videos; deviations from the mean 0.5 sum to +1 and -1 per cluster: sqrt(2/1 · 2) / 4 = 0.5
    assert clustered_se([1, 1, 0, 0], ["a", "a", "b", "b"]) == pytest.approx(math.sqrt(2 * 2) / 4)
    assert clustered_se([1, 0, 1, 0], ["a", "a", "b", "b"]) == 0.0


@pytest.fixture(scope="module")
def samples_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 10 minutes: long enough that 16-35 uniform frames (a frame every 17-37 s) miss 2-5 s events
    video = generate(SynthClinConfig(duration_seconds=600, seed=11), tmp_path_factory.mktemp("video"))
    out = tmp_path_factory.mktemp("suite")
    build(BuildConfig(source="synthclin", annotations=str(video.annotation_path), out=str(out), workers=1))
    return out / "samples.jsonl"


def test_oracle_beats_uniform_and_reruns_skip(samples_path: Path, tmp_path: Path) -> None:
    config = EvalConfig(samples=str(samples_path), out=str(tmp_path), backend="oracle")
    runs = evaluate(config)
    n = len(list(read_jsonl(samples_path)))
    assert len(runs["agent"]) == len(runs["baseline"]) == n
    tables = write_tables(runs, tmp_path)
    agent, base = tables["agent"], tables["baseline"]
    grounding = next(k for k in agent if k.startswith("grounding/"))
    assert agent[grounding]["mIoU"]["value"] > 80 > base[grounding]["mIoU"]["value"]
    assert base[grounding]["frames_viewed"] == pytest.approx(agent[grounding]["frames_viewed"], abs=1)
    assert "| grounding/synthclin | agent |" in (tmp_path / "tables.md").read_text()
    assert (tmp_path / "frames_vs_score.png").stat().st_size > 1000
    again = evaluate(config)  # everything finished: nothing is run or appended twice
    assert [r["id"] for r in again["agent"]] == [r["id"] for r in runs["agent"]]


def test_rescore_scores_the_stored_episodes_by_the_current_rules(samples_path: Path, tmp_path: Path) -> None:
    from medscope.cli import main

    config = EvalConfig(samples=str(samples_path), out=str(tmp_path), backend="oracle")
    runs = evaluate(config)
    scored = {run: {r["id"]: dict(r["metrics"]) for r in records} for run, records in runs.items()}
    # A folder scored under another rule: every stored accuracy off, grounding IoUs gone.
    for name in ("results.jsonl", "baseline.jsonl"):
        records = read_lines(tmp_path / name)
        for record in records:
            record["metrics"]["accuracy"] = 0.25
            record["metrics"].pop("iou", None)
        (tmp_path / name).write_text("".join(json.dumps(record) + "\n" for record in records))
    assert main(["eval", "--samples", str(samples_path), "--out", str(tmp_path), "--rescore"]) == 0
    for run, name in (("agent", "results.jsonl"), ("baseline", "baseline.jsonl")):
        assert {r["id"]: r["metrics"] for r in read_lines(tmp_path / name)} == scored[run]  # no model ran
    tables = json.loads((tmp_path / "tables.json").read_text())
    grounding = next(k for k in tables["agent"] if k.startswith("grounding/"))
    assert tables["agent"][grounding]["mIoU"]["value"] > 80  # the tables are the rescored ones
    # Other samples than the run's are refused, naming the fix.
    first = (samples_path.read_text().splitlines()[0]) + "\n"
    (tmp_path / "other.jsonl").write_text(first)
    with pytest.raises(ValueError, match="give the run's own --samples"):
        rescore(EvalConfig(samples=str(tmp_path / "other.jsonl"), out=str(tmp_path), rescore=True))


SLOW_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from medscope.agent.backends.scripted import OracleBackend
    from medscope.agent.loop import AgentConfig
    from medscope.eval.runner import run_samples
    from medscope.suite.trajectories import reference_for
    from medscope.suite.records import read_jsonl

    class Slow(OracleBackend):
        def generate(self, messages, **kw):
            time.sleep(0.1)
            return super().generate(messages, **kw)

    samples = list(read_jsonl(sys.argv[1]))
    run_samples(samples, lambda s: Slow(reference_for(s)), Path(sys.argv[2]), AgentConfig(), run="oracle")
""")


def test_killed_run_resumes_with_every_id_once(samples_path: Path, tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    script = tmp_path / "slow.py"
    script.write_text(SLOW_RUN)
    proc = subprocess.Popen([sys.executable, str(script), str(samples_path), str(results)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not results.exists() or results.read_text().count("\n") < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    partial = read_lines(results)
    samples = list(read_jsonl(samples_path))
    assert 3 <= len(partial) < len(samples)
    with results.open("a") as handle:  # as if the kill had torn a line mid-write
        handle.write('{"id": "torn')
    from medscope.agent.backends.scripted import OracleBackend
    from medscope.agent.loop import AgentConfig
    from medscope.suite.trajectories import reference_for

    final = run_samples(samples, lambda s: OracleBackend(reference_for(s)), results, AgentConfig(), run="oracle")
    ids = [r["id"] for r in final]
    assert sorted(ids) == sorted(s.id for s in samples) and len(ids) == len(set(ids))
    assert [r["id"] for r in final[: len(partial)]] == [r["id"] for r in partial]  # kept, not redone


def test_markdown_lists_runs_side_by_side() -> None:
    rows = [{"id": f"s{i}", "task": "grounding", "source": "x", "video": f"v{i % 2}",
             "metrics": {"iou": i / 4, "accuracy": 1.0, "evidence_iou": 0.5, "tool_calls": 3.0,
                         "frames_viewed": 35.0, "seconds": 0.1}} for i in range(5)]
    table = summarize(rows)["grounding/x"]
    assert table["R@0.5"] == pytest.approx(60.0) and table["mIoU"]["value"] == pytest.approx(50.0)
    text = markdown({"agent": {"grounding/x": table}, "baseline": {"grounding/x": table}})
    assert text.count("| grounding/x |") == 2 and "R@0.7" in text
    assert json.dumps(table)  # JSON-serialisable as written to tables.json
