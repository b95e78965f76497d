"""Each conversation's attention cache, kept between its turns: the HF backend encodes only what a turn adds.

An episode's next prompt is its last prompt, the turn the model wrote and the tool's observation. Without a cache
``generate`` encodes all of it again at every turn, every earlier frame included: on medscope-tiny's evaluation
(eight episodes a batch) that prefill was about two thirds of ``generate``'s time. ``PrefixCache`` keeps every
row's cache after ``generate`` and finds it again by the longest common token prefix with the next prompt, so
a template that renders an earlier turn otherwise than it was written (one that drops past reasoning, or a
token split another way) reuses what still matches and nothing more. Frames count by their pixels, not their
tokens: every frame's placeholder tokens are the same ids, so two videos of one length (the same overview
timestamps) would otherwise share a "prefix" of different frames. Each row then encodes its new tokens and
frames alone, and the rows are decoded together from one left-padded cache, as ``generate`` decodes a batch.

Positions come from the model's own rule over the whole padded batch (``_prepare_position_ids_for_generation``,
what ``generate`` computes when it starts from nothing), so Qwen-VL's multimodal positions of the new frames are
the ones an uncached prompt gives them; a test checks that turns come out the same with and without the cache.
Only caches of plain growing layers are kept (``DynamicLayer``): a model with sliding-window or linear-attention
layers decodes without it (``supports_prefix_cache``).

``ImageCache`` does the same for the processor: each frame is resized and normalised once, not at every turn
that shows it again (the processor was a sixth of an evaluation once the prefill was cached).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def supports_prefix_cache(model: Any) -> bool:
    """Whether ``model``'s cache can be cut back to a prefix and padded (every layer a plain ``DynamicLayer``)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if getattr(model.config, "is_encoder_decoder", False):
        return False
    layers = DynamicCache(config=model.config).layers
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


@dataclass(frozen=True)
class Frame:
    """One image of a prompt: a digest of its pixels, and the placeholder tokens it takes."""

    digest: bytes
    tokens: int


def image_digest(image: Any) -> bytes:
    """A digest of a PIL image's pixels, mode and size."""
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    digest.update(f"{image.mode}{image.size}".encode())
    return digest.digest()


def frame(image: Any, tokens: int) -> Frame:
    """``image`` (PIL) as a ``Frame`` of ``tokens`` placeholders."""
    return Frame(image_digest(image), tokens)


def row_frames(images: Sequence[Sequence[Any]], grid: Any, merge: int) -> list[list[Frame]]:
    """Each row's images (PIL, in prompt order) as ``Frame``s: a processor's ``image_grid_thw`` holds every row's
    images in turn, each taking ``t * h * w / merge**2`` placeholders."""
    tokens = [] if grid is None else (grid.prod(dim=-1) // merge**2).tolist()
    rows, first = [], 0
    for row in images:
        rows.append([frame(image, n) for image, n in zip(row, tokens[first : first + len(row)], strict=True)])
        first += len(row)
    return rows


class ImageCache:
    """A processor's image processor that processes each image once: a call with images it has seen takes their
    rows of ``pixel_values`` and ``image_grid_thw`` from the cache (the last ``capacity`` images, by pixels and
    settings). Calls it cannot split by image (not a list of PIL images, not ``return_tensors="pt"``, other
    outputs than those two) go to the image processor as they are. Every other attribute is the wrapped one's,
    so the processor around it reads its patch and merge sizes as before."""

    def __init__(self, inner: Any, capacity: int = 1024) -> None:
        self.inner, self.capacity = inner, capacity
        self._rows: OrderedDict[tuple[bytes, str], tuple[Any, Any]] = OrderedDict()

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (a copy being built): no attribute to forward to
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __call__(self, images: Any = None, **kwargs: Any) -> Any:
        import torch
        from PIL import Image
        from transformers import BatchFeature

        if (not isinstance(images, list) or not images or kwargs.get("return_tensors") != "pt"
                or not all(isinstance(image, Image.Image) for image in images)):
            return self.inner(images, **kwargs)
        settings = repr(sorted(kwargs.items()))
        keys = [(image_digest(image), settings) for image in images]
        missing = {key: image for key, image in zip(keys, images, strict=True) if key not in self._rows}
        if missing:
            out = self.inner(list(missing.values()), **kwargs)
            if set(out.keys()) != {"pixel_values", "image_grid_thw"}:
                return self.inner(images, **kwargs)
            grids = out["image_grid_thw"]
            for key, grid, pixels in zip(missing, grids, out["pixel_values"].split(grids.prod(-1).tolist()),
                                         strict=True):
                self._rows[key] = (pixels, grid)
        rows = [self._rows[key] for key in keys]
        for key in keys:
            self._rows.move_to_end(key)
        while len(self._rows) > max(self.capacity, len(set(keys))):
            self._rows.popitem(last=False)
        return BatchFeature({"pixel_values": torch.cat([pixels for pixels, _ in rows]),
                             "image_grid_thw": torch.stack([grid for _, grid in rows])})


@dataclass(eq=False)  # rows are told apart by identity (their tensors do not compare to a bool)
class _Row:
    ids: Any  # 1-D token ids: a prompt and the turn written after it
    prompt: int  # how many of ``ids`` are the prompt
    frames: tuple[Frame, ...]  # the prompt's images, in order
    cache: Any  # a DynamicCache of one row, holding the first ``cache.get_seq_length()`` of ``ids``


class PrefixCache:
    """The caches of the last ``capacity`` rows ``generate`` decoded; ``reused`` and ``encoded`` count prompt
    tokens taken from a cache and encoded anew, since the start."""

    def __init__(self, capacity: int = 16) -> None:
        if capacity < 1:
            raise ValueError(f"prefix cache capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.reused = 0
        self.encoded = 0
        self._rows: list[_Row] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def _take(self, ids: Any, starts: list[int], frames: list[Frame], config: Any) -> tuple[Any, int]:
        """The cache of the kept row sharing the longest prefix with ``ids`` (whose images start at ``starts``),
        and that prefix's length (``None, 0`` when none shares a token). A row whose whole prompt ``ids`` repeats
        (its conversation's next turn) is handed over; one it shares only a start with (another episode's system
        prompt) is copied up to there and stays for its own next turn."""
        from transformers import DynamicCache

        best, length = None, 0
        with self._lock:
            for row in self._rows:
                n = min(len(row.ids), row.cache.get_seq_length(), len(ids))
                same = int((row.ids[:n] == ids[:n]).long().cumprod(0).sum()) if n else 0
                for k, start in enumerate(starts):  # the same placeholders, but are they the same frames?
                    if start >= same:
                        break
                    if k >= len(row.frames) or row.frames[k] != frames[k]:
                        same = start
                        break
                if same > length:
                    best, length = row, same
            if best is None:
                return None, 0
            if length >= best.prompt:
                self._rows.remove(best)
                return best.cache, length
        copy = DynamicCache(config=config)
        for index, layer in enumerate(best.cache.layers):
            copy.update(layer.keys[..., :length, :].clone(), layer.values[..., :length, :].clone(), index)
        return copy, length

    def _keep(self, row: _Row) -> None:
        with self._lock:
            self._rows.append(row)
            del self._rows[: max(0, len(self._rows) - self.capacity)]

    def prepare(self, model: Any, inputs: Any, frames: list[list[Frame]], image_token_id: int) -> dict[str, Any]:
        """``generate``'s arguments for the left-padded batch ``inputs`` (a processor's output; ``frames``: per
        row, its images): every row's prompt but its last token already in one padded cache, from a kept row
        where one shares a prefix."""
        import torch
        from transformers import DynamicCache

        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        width = int(ids.shape[1])
        # The model's own positions for the whole batch, as generate computes them for an uncached prompt.
        positions = model._prepare_position_ids_for_generation(ids, dict(inputs))
        grid, pixels = inputs.get("image_grid_thw"), inputs.get("pixel_values")
        patches = [] if grid is None else grid.prod(-1).tolist()
        caches, first_image, first_patch = [], 0, 0
        for i, row_frames in enumerate(frames):
            pad, count = width - int(mask[i].sum()), len(row_frames)
            row_ids = ids[i, pad:]
            row_patches = patches[first_image : first_image + count]
            starts = _image_starts(row_ids, image_token_id, [f.tokens for f in row_frames])
            cache, reused = self._take(row_ids, starts, row_frames, model.config)
            end = len(row_ids) - 1  # generate encodes the last token itself: it has to start from one
            reused = min(reused, end)
            seen = sum(1 for k, start in enumerate(starts) if start + row_frames[k].tokens <= reused)
            if seen < len(starts):
                reused = min(reused, starts[seen])  # never cut inside an image: its tokens are encoded together
            if cache is None:
                cache = DynamicCache(config=model.config)
            cache.crop(reused - cache.get_seq_length())  # a negative count: tokens to drop from the end
            if end > reused:
                forward: dict[str, Any] = {"input_ids": row_ids[None, reused:end], "cache": cache, "use_cache": True,
                                           "position_ids": positions[:, i : i + 1, pad + reused : pad + end],
                                           "logits_to_keep": 1}
                if seen < count:  # the frames among the new tokens, and only those, go through the vision tower
                    start = first_patch + sum(row_patches[:seen])
                    forward["pixel_values"] = pixels[start : first_patch + sum(row_patches)]
                    forward["image_grid_thw"] = grid[first_image + seen : first_image + count]
                model(**forward)
            self.reused += reused
            self.encoded += end - reused
            caches.append(cache)
            first_image += count
            first_patch += sum(row_patches)
        batch = DynamicCache(config=model.config)
        for layer in range(len(batch.layers)):
            keys = [_pad_left(c.layers[layer].keys, width - 1) for c in caches]
            values = [_pad_left(c.layers[layer].values, width - 1) for c in caches]
            batch.update(torch.cat(keys), torch.cat(values), layer)
        return {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "cache": batch}

    def keep(self, model: Any, sequences: Any, mask: Any, cache: Any, frames: list[list[Frame]]) -> None:
        """Keeps each row of a finished ``generate`` (its ``sequences`` and ``cache``; ``mask``: the prompts'
        attention mask, whose zeros are the left padding; ``frames``: as ``prepare`` had them), for the
        conversation's next turn."""
        from transformers import DynamicCache

        width = int(mask.shape[1])
        for i in range(int(sequences.shape[0])):
            pad = width - int(mask[i].sum())
            row = DynamicCache(config=model.config)
            for index, layer in enumerate(cache.layers):
                row.update(layer.keys[i : i + 1, :, pad:].clone(), layer.values[i : i + 1, :, pad:].clone(), index)
            self._keep(_Row(sequences[i, pad:].clone(), width - pad, tuple(frames[i]), row))


def _image_starts(ids: Any, image_token_id: int, tokens: list[int]) -> list[int]:
    """Where each image's placeholders start in ``ids``, the k-th image taking ``tokens[k]`` of them in turn."""
    where = (ids == image_token_id).nonzero().flatten().tolist()
    if len(where) != sum(tokens):
        raise ValueError(f"{len(where)} image placeholders in the prompt for images of {sum(tokens)} tokens")
    starts, first = [], 0
    for count in tokens:
        starts.append(where[first])
        first += count
    return starts


def _pad_left(tensor: Any, length: int) -> Any:
    """A cache tensor (1, heads, n, dim) with zeros before it up to ``length`` positions (masked out)."""
    import torch

    missing = length - int(tensor.shape[-2])
    if missing <= 0:
        return tensor
    shape = (*tensor.shape[:-2], missing, tensor.shape[-1])
    return torch.cat([tensor.new_zeros(shape), tensor], dim=-2)
