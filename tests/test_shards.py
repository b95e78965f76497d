"""Work split over machines: eval and suite build with --shard K/N, then `medscope merge`, give what one run gives;
shards of other runs, missing and repeated shards are refused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from medscope.cli import main
from medscope.eval.runner import EvalConfig, evaluate
from medscope.shards import parse_shard, take
from medscope.suite.build import BuildConfig, build
from medscope.suite.qa import QAConfig
from medscope.suite.records import Sample, read_jsonl, write_jsonl
from medscope.video.standin import write_standin
from medscope.video.synthclin import SynthClinConfig, generate


def test_parse_and_take() -> None:
    assert parse_shard("2/4") == (2, 4) and parse_shard(None) is None
    for bad in ("0/4", "5/4", "2-4", "a/b"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)
    items = list(range(10))
    parts = [take(items, (k, 3)) for k in (1, 2, 3)]
    assert sorted(x for part in parts for x in part) == items and parts[0] == [0, 3, 6, 9]


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    videos = [write_standin(tmp_path / "videos" / f"v{k}.mp4", 40.0, fps=2) for k in range(3)]
    rows = [Sample(id=f"t/v{k % 3}/grounding/{k}", video=str(videos[k % 3]), duration=40.0, question=f"When {k}?",
                   answer=f"[{k + 1:.2f}, {k + 5:.2f}]", task="grounding", evidence=[[k + 1.0, k + 5.0]],
                   source="test") for k in range(7)]
    write_jsonl(tmp_path / "suite" / "samples.jsonl", rows)
    return tmp_path / "suite" / "samples.jsonl"


def test_sharded_eval_merges_into_the_whole_run(samples: Path, tmp_path: Path) -> None:
    base = EvalConfig(samples=str(samples), out="", backend="oracle")
    for k in (1, 2, 3):
        evaluate(dataclasses.replace(base, out=str(tmp_path / f"s{k}"), shard=f"{k}/3"))
    shards = [str(tmp_path / f"s{k}") for k in (1, 2, 3)]
    assert main(["merge", "eval", "--out", str(tmp_path / "merged"), *shards]) == 0
    merged = [json.loads(line) for line in (tmp_path / "merged" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in merged) == sorted(s.id for s in read_jsonl(samples))
    assert (tmp_path / "merged" / "baseline.jsonl").read_text().count("\n") == 7
    tables = json.loads((tmp_path / "merged" / "tables.json").read_text())
    assert tables["agent"]["grounding/test"]["n"] == 7 and tables["agent"]["grounding/test"]["mIoU"]["value"] == 100
    assert main(["merge", "eval", "--out", str(tmp_path / "m2"), *shards[:2]]) == 2  # shard 3 missing
    evaluate(dataclasses.replace(base, out=str(tmp_path / "other"), shard="3/3", backend="teacher"))
    assert main(["merge", "eval", "--out", str(tmp_path / "m3"), *shards[:2], str(tmp_path / "other")]) == 2


def test_sharded_suite_build_merges(tmp_path: Path) -> None:
    for seed in range(3):
        generate(SynthClinConfig(duration_seconds=90.0, seed=seed), tmp_path / "videos", name=f"case{seed}")
    base = BuildConfig(source="synthclin", annotations=str(tmp_path / "videos"), out="", workers=1,
                       qa=QAConfig(max_per_task=2))
    whole = build(dataclasses.replace(base, out=str(tmp_path / "whole")))
    for k in (1, 2):
        build(dataclasses.replace(base, out=str(tmp_path / f"s{k}"), shard=f"{k}/2"))
    assert main(["merge", "suite", "--out", str(tmp_path / "merged"), str(tmp_path / "s1"), str(tmp_path / "s2")]) == 0
    merged = list(read_jsonl(tmp_path / "merged" / "samples.jsonl"))
    assert all(Path(s.video).exists() for s in merged)  # paths re-anchored to the merged folder
    funnel = json.loads((tmp_path / "merged" / "funnel.json").read_text())
    assert funnel["samples"]["total"]["generated"] == whole["total"]["generated"]
    assert funnel["records"]["read"] == json.loads((tmp_path / "whole" / "funnel.json").read_text())["records"]["read"]
    assert len(list(read_jsonl(tmp_path / "merged" / "trajectories.jsonl", "trajectory"))) == len(merged)
