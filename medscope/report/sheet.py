"""Contact sheets: a grid of frames, each captioned with its timestamp, saved as one PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from medscope.io import atomic_path
from medscope.video.source import Frame

_LABEL_HEIGHT = 14
_PAD = 4


def contact_sheet(frames: Sequence[Frame], *, columns: int = 4, title: str = "") -> Image.Image:
    """Lay ``frames`` out in rows of ``columns``, each labelled ``[t s]`` under the image."""
    if not frames:
        raise ValueError("contact_sheet needs at least one frame")
    cell_w = max(f.image.width for f in frames)
    cell_h = max(f.image.height for f in frames) + _LABEL_HEIGHT
    rows = -(-len(frames) // columns)
    top = _LABEL_HEIGHT + _PAD if title else 0
    sheet = Image.new("RGB", (columns * (cell_w + _PAD) + _PAD, top + rows * (cell_h + _PAD) + _PAD), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((_PAD, _PAD), title, fill="black")
    for n, frame in enumerate(frames):
        x = _PAD + (n % columns) * (cell_w + _PAD)
        y = top + _PAD + (n // columns) * (cell_h + _PAD)
        sheet.paste(frame.image.convert("RGB"), (x, y))
        draw.text((x, y + frame.image.height + 1), f"[{frame.pts_seconds:.2f}s] #{frame.index}", fill="black")
    return sheet


def save_png(image: Image.Image, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)
