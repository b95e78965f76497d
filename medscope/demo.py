"""``make demo``: generate a SynthClin video and show the video tools working on it.

Prints the annotation summary and writes two contact sheets: the coarse overview a model first sees, and
a ``crop_video`` around one short event that the overview misses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from medscope.report.sheet import contact_sheet, save_png
from medscope.video.source import VideoSource
from medscope.video.synthclin import SynthClinConfig, generate
from medscope.video.tools import Observation, VideoTools


@dataclass(frozen=True)
class DemoConfig:
    out: str = field(default="runs/demo", metadata={"help": "output folder"})
    minutes: float = field(default=10.0, metadata={"help": "length of the generated video"})
    seed: int = field(default=0, metadata={"help": "SynthClin seed"})


def main(config: DemoConfig) -> dict[str, str]:
    out = Path(config.out)
    video = generate(SynthClinConfig(duration_seconds=config.minutes * 60, seed=config.seed), out)
    ann = video.annotation
    print(f"SynthClin video: {video.video_path}  ({ann['duration']:.0f}s, {ann['num_frames']} frames)")
    print(f"annotations:     {video.annotation_path}")
    print(f"  phases ({len(ann['phases'])}): " + " → ".join(p["label"] for p in ann["phases"]))
    print(f"  instruments: {len(ann['instruments'])} appearances; events: {len(ann['events'])}")
    for event in ann["events"]:
        print(f"    {event['start']:7.2f}–{event['end']:7.2f}s  {event['label']} ({event.get('position', '')})")

    with VideoSource(video.video_path) as source:
        tools = VideoTools(source)
        overview = tools.overview()
        event = ann["events"][0]
        margin = 4.0
        crop = tools.crop_video(event["start"] - margin, event["end"] + margin)
        assert isinstance(crop, Observation), crop  # arguments are in range: a ToolError would be our bug
    hit = [t for t in overview.timestamps if event["start"] <= t < event["end"]]
    print(f"overview: {len(overview.frames)} frames every ~{ann['duration'] / len(overview.frames):.0f}s; "
          f"frames inside the first event: {len(hit)}")
    print(f"crop_video({crop.arguments['start_time']:.1f}, {crop.arguments['end_time']:.1f}): "
          + ", ".join(f"{t:.2f}s" for t in crop.timestamps))
    paths = {
        "overview": str(save_png(contact_sheet(overview.frames, title="overview"), out / "overview.png")),
        "crop": str(save_png(contact_sheet(crop.frames, title=f"crop_video around {event['label']}"),
                             out / "crop_event.png")),
    }
    print("contact sheets:  " + "  ".join(paths.values()))
    (out / "demo.json").write_text(json.dumps(paths, indent=2))
    return paths
