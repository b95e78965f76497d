"""Suite builds on the official annotation files of public datasets, with stand-in videos of the real durations.

The official files are not in this repository (their licences are their owners'); put them under ``--data``
in the layout below (each source's own file names) and run::

    python benchmarks/real_datasets.py --data /path/to/official --work /tmp/medscope-real

For each source the annotations are read once without videos (durations from the annotation, the Charades
CSV or the frame count), a stand-in video of that duration is written for every video (1 fps, 32×32), and
``medscope suite build --no-trajectories`` runs on them. The table shows what loading did to the official
records (read, skipped, clamped, disagreeing, by reason) and the samples generated and kept; the JSON keeps
every number (``benchmarks/results/real_datasets.json``). Stand-ins and suites go under ``--work``; stand-ins
are reused.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from medscope.eval.metrics import answer_iou, answer_score
from medscope.io import write_text_atomic
from medscope.suite.adapters import ADAPTERS, load_annotations
from medscope.suite.build import BuildConfig, build
from medscope.suite.loading import LoadContext, LoadOptions
from medscope.suite.records import read_jsonl
from medscope.video.standin import write_standin


@dataclass(frozen=True)
class Case:
    source: str
    annotations: str  # relative to --data
    options: dict[str, object] = field(default_factory=dict)  # LoadOptions fields; paths relative to --data


CASES = [
    Case("medvidqa", "medvidqa/train.json"),
    Case("medvidqa", "medvidqa/val.json"),
    Case("medvidqa", "medvidqa/test.json"),
    Case("qvhighlights", "qvhighlights/highlight_train_release.jsonl"),
    Case("qvhighlights", "qvhighlights/highlight_val_release.jsonl"),
    Case("activitynet", "activitynet_captions/train.json"),
    Case("activitynet", "activitynet_captions/val_1.json"),
    Case("charades", "charades_sta/charades_sta_train.txt", {"lengths": "charades_sta/Charades_v1_train.csv"}),
    Case("charades", "charades_sta/charades_sta_test.txt", {"lengths": "charades_sta/Charades_v1_test.csv"}),
    Case("cholec80", "cholec80", {"fps": 25.0}),
    Case("autolaparo", "autolaparo/labels"),
    Case("cataract101", "cataract101"),
    Case("ophnet", "ophnet"),
    Case("multibypass140", "multibypass140"),
]


def _options(case: Case, data: Path) -> LoadOptions:
    values = dict(case.options)
    if "lengths" in values:
        values["lengths"] = str(data / str(values["lengths"]))
    return LoadOptions(**values)  # type: ignore[arg-type]


def standins(case: Case, data: Path, folder: Path) -> int:
    """A stand-in video for every annotated video whose duration the annotations give (or imply)."""
    annotations = load_annotations(case.source, data / case.annotations, LoadContext(_options(case, data)))
    written = 0
    for annotation in annotations:
        ends = [e for seg in annotation.segments for _, e in (seg.windows or ((seg.start, seg.end),))]
        seconds = annotation.duration or (max(ends) if ends else 0.0)
        path = folder / f"{annotation.video_id}.mp4"
        if seconds > 0 and not path.exists():
            write_standin(path, seconds)
            written += 1
    return written


def run(case: Case, data: Path, out: Path) -> dict[str, object]:
    videos = out / "standins" / case.source
    started = time.perf_counter()
    standins(case, data, videos)
    name = Path(case.annotations).stem if Path(case.annotations).suffix else Path(case.annotations).name
    suite = out / "suites" / f"{case.source}-{name}"
    table = build(BuildConfig(source=case.source, annotations=str(data / case.annotations), videos=str(videos),
                              out=str(suite), workers=1, trajectories=False, load=_options(case, data)))
    funnel = json.loads((suite / "funnel.json").read_text())
    return {"source": case.source, "file": case.annotations, "records": funnel["records"],
            "samples": table["total"], "reference_not_1": reference_misses(suite / "samples.jsonl"),
            "seconds": round(time.perf_counter() - started, 1)}


def reference_misses(samples: Path) -> int:
    """Kept samples whose own reference answer does not score accuracy 1.0 (and IoU 1.0 for grounding): 0."""
    misses = 0
    for s in read_jsonl(samples):
        accuracy = answer_score(s.answer, answer=s.answer, task=s.task, evidence=s.evidence)
        iou = answer_iou(s.answer, s.evidence) if s.task == "grounding" else 1.0
        misses += accuracy < 1.0 or iou < 1.0 - 1e-9
    return misses


def _reasons(counts: dict[str, int]) -> str:
    return "; ".join(f"{n} {reason}" for reason, n in counts.items()) or "0"


def markdown(rows: list[dict[str, object]]) -> str:
    lines = ["| source | file | records read | skipped | clamped | disagreements | samples generated | kept | "
             "reference ≠ 1.0 |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        records, samples = row["records"], row["samples"]
        assert isinstance(records, dict) and isinstance(samples, dict)
        lines.append(f"| {row['source']} | `{row['file']}` | {records['read']} | {_reasons(records['skipped'])} | "
                     f"{_reasons(records['clamped'])} | {_reasons(records['disagrees'])} | "
                     f"{samples['generated']} | {samples['kept']} | {row['reference_not_1']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with the official annotation files")
    parser.add_argument("--work", default="/tmp/medscope-real", help="where stand-in videos and suites go")
    parser.add_argument("--results", default="benchmarks/results", help="where real_datasets.json goes")
    parser.add_argument("--sources", nargs="*", default=None, help="only these sources")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    data, out = Path(args.data), Path(args.work)
    rows = []
    for case in CASES:
        if (args.sources and case.source not in args.sources) or case.source not in ADAPTERS:
            continue
        if not (data / case.annotations).exists():
            print(f"skip {case.source}: no {data / case.annotations}")
            continue
        rows.append(run(case, data, out))
        print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    write_text_atomic(Path(args.results) / "real_datasets.json", json.dumps(rows, indent=2) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
