"""A machine-readable frame index drawn into the top rows of a frame.

SynthClin writes ``draw_frame_code(frame, i)`` into every frame it renders, so a test can read back which
frame a decoder, a seek or a resize actually returned instead of trusting timestamps. The code is a
single stripe of big black/white blocks across the full width: a white guard block, ``FRAME_CODE_BITS``
data blocks (most significant bit first) and a black guard block. Every position is relative to the
image size, and the reader averages the centre of each block and thresholds it halfway between the two
guards, so the code survives H.264 at ordinary quality and downscaling to about 100 px wide.

It is a test aid, not a watermark: it does not resist cropping, rotation or heavy blur, and a frame
without a code is detected only by its guards (``read_frame_code`` raises ``ValueError``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

FRAME_CODE_BITS: int = 20  # 2**20 frames: one hour at 240 fps, with room to spare

# Band height as a share of the frame height; 1/16 keeps ~7 rows at 112 px high.
_BAND_FRACTION = 1 / 16
_CELLS = FRAME_CODE_BITS + 2  # white guard, data bits, black guard
_MIN_CONTRAST = 64.0  # guards closer than this in grey level: no code in this image


def _band_rows(height: int) -> int:
    return max(2, round(height * _BAND_FRACTION))


def _cell_edges(width: int) -> np.ndarray:
    """Column boundaries of the cells: cell k spans [edges[k], edges[k + 1])."""
    return np.round(np.linspace(0, width, _CELLS + 1)).astype(int)


def draw_frame_code(rgb: np.ndarray, index: int) -> None:
    """Draw ``index`` in place into the top rows of an HxWx3 uint8 frame.

    Raises ``ValueError`` when the index does not fit in ``FRAME_CODE_BITS`` bits or the frame is too
    small to hold blocks of at least 2 px.
    """
    if not 0 <= index < 2**FRAME_CODE_BITS:
        raise ValueError(f"frame index {index} does not fit in {FRAME_CODE_BITS} bits (0..{2**FRAME_CODE_BITS - 1})")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 array, got shape {rgb.shape} dtype {rgb.dtype}")
    height, width = rgb.shape[:2]
    if width < 2 * _CELLS or height < 16:
        raise ValueError(f"frame {width}x{height} is too small for a frame code (min {2 * _CELLS}x16)")
    rows = _band_rows(height)
    edges = _cell_edges(width)
    bits = [1] + [(index >> (FRAME_CODE_BITS - 1 - k)) & 1 for k in range(FRAME_CODE_BITS)] + [0]
    for k, bit in enumerate(bits):
        rgb[:rows, edges[k] : edges[k + 1]] = 255 if bit else 0


def read_frame_code(image: Image.Image | np.ndarray) -> int:
    """Read the frame index drawn by ``draw_frame_code`` from an image of any size.

    Accepts a PIL image or an HxW / HxWxC array. Raises ``ValueError`` when the guard blocks are missing
    (the image carries no frame code).
    """
    if isinstance(image, Image.Image):
        width, height = image.size
    elif image.ndim in (2, 3):
        height, width = image.shape[:2]
    else:
        raise ValueError(f"expected an image or an HxW(xC) array, got shape {image.shape}")
    band = _band_rows(height) if height >= 16 else 1
    # Only the band is converted, so reading stays cheap at any frame size.
    if isinstance(image, Image.Image):
        arr = np.asarray(image.crop((0, 0, width, band)).convert("RGB"), dtype=np.float32)
    else:
        arr = np.asarray(image[:band], dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[..., :3].mean(axis=2)
    # Sample the middle half of the band and of each cell: block edges ring under H.264 and blur when resized.
    top, bottom = band // 4, max(band // 4 + 1, (3 * band) // 4)
    edges = np.linspace(0, width, _CELLS + 1)
    levels = np.empty(_CELLS)
    for k in range(_CELLS):
        left = int(edges[k] + (edges[k + 1] - edges[k]) / 4)
        right = max(left + 1, int(np.ceil(edges[k + 1] - (edges[k + 1] - edges[k]) / 4)))
        levels[k] = arr[top:bottom, left:right].mean()
    white, black = levels[0], levels[-1]
    if white - black < _MIN_CONTRAST:
        raise ValueError("no frame code found (guard blocks missing or too faint)")
    threshold = (white + black) / 2
    value = 0
    for level in levels[1:-1]:
        value = (value << 1) | int(level > threshold)
    return value
