"""The HF backend's prefix cache: each conversation's next turn encodes only what it adds, and writes what an
uncached ``generate`` writes. Tiny random Qwen3-VL and Qwen2.5-VL models (built offline) over batches of
conversations of different lengths with new frames at every turn, and the shipped model over real episodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from medscope.agent.backends.base import Request, image_part, text_part  # noqa: E402
from medscope.agent.backends.hf import HFBackend  # noqa: E402
from medscope.agent.backends.prefix_cache import PrefixCache, _image_starts, _Row, frame  # noqa: E402
from medscope.train import tiny  # noqa: E402

ARCHS = ["qwen3_vl", "qwen2_5_vl"]
TEXTS = ["<think>Look closer at the crop.</think>",
         '<tool_call>{"name": "crop_video", "arguments": {"start_time": 80.0, "end_time": 95.5}}</tool_call>',
         "<answer>[87.5, 90.0]</answer> [12.5s] When does the bleeding start?"] * 20


def _frames(count: int, shade: int, size: tuple[int, int], label: int = 0) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for k in range(count):
        noise = np.random.default_rng(shade + k).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        parts += [text_part(f"[{10.0 * k + label:.1f}s]"), image_part(Image.fromarray(noise))]
    return parts


SYSTEM = {"role": "system", "content": [text_part("You answer with the time of the evidence.")]}


def _first_turns() -> list[list[dict[str, Any]]]:
    """Three conversations whose prompts differ in length: the batch is left-padded."""
    return [[SYSTEM, {"role": "user", "content": [*_frames(n, 30 * n, size, n), text_part(question)]}]
            for n, size, question in ((2, (64, 48), "When?"), (4, (96, 64), "When does it bleed?"),
                                      (3, (80, 80), "Where is the gauze, and when is it seen?"))]


def _turns(backend: HFBackend, rounds: int) -> list[list[str]]:
    """``rounds`` turns of the three conversations, batched; after each, the written turn and a tool result with
    new frames are appended (the agent loop's shape). At the second round a fourth conversation joins whose
    prompt is the second's first prompt token for token, with other frames (another video of the same length)."""
    convos = _first_turns()
    written: list[list[str]] = []
    for turn in range(rounds):
        if turn == 1:  # first in the batch: it meets the second's row before the second takes it back
            convos.insert(0, [SYSTEM, {"role": "user", "content": [*_frames(4, 200, (96, 64), 4),
                                                                 text_part("When does it bleed?")]}])
        texts = backend.generate_batch([Request(list(c), (), 12) for c in convos])
        written.append(texts)
        for k, (convo, text) in enumerate(zip(convos, texts, strict=True)):
            for special in backend.tokenizer.get_added_vocab():  # a random model writes image placeholders too
                text = text.replace(special, "") if special.startswith("<|") else text
            convo.append({"role": "assistant", "content": [text_part(text)]})
            convo.append({"role": "tool", "content": [*_frames(1 + k % 2, 50 + 20 * turn, (64, 48)),
                                                      text_part("The crop.")]})
    return written


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for arch in ARCHS:
        tokenizer = tiny.build_tokenizer(TEXTS, vocab_size=300, chat_template=tiny.load_chat_template(arch))
        model = tiny.build_tiny_model(arch, tokenizer, rope_theta=1e4)
        with torch.no_grad():  # sharper than initialised: a wrong position or frame changes the tokens written
            for weight in model.parameters():
                weight.mul_(6.0)
        out[arch] = tiny.save_tiny(model, tiny.build_processor(arch, tokenizer), tmp_path_factory.mktemp(arch))
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_cached_turns_are_the_uncached_turns(models: dict[str, Path], arch: str, one_torch_thread: None) -> None:
    # float32 on whatever device there is: the cache is exact there (also on an H200 for both architectures); in bf16
    # a cached turn's logits differ from a full recompute by rounding, enough to flip a random model's near ties.
    cached = HFBackend.from_pretrained(models[arch], threads=1, dtype="float32")
    plain = HFBackend(cached.model, cached.processor, name="plain", prefix_cache=False)
    assert cached.prefix_cache is not None and plain.prefix_cache is None
    together = _turns(cached, 3)
    assert together == _turns(plain, 3)
    assert any(text for turn in together for text in turn)  # the random model wrote something to carry over
    cache = cached.prefix_cache
    # Later turns came mostly from the cache: every earlier frame and token of the 3 + 4 + 4 later prompts.
    assert cache.reused > cache.encoded > 0
    assert len(cache) <= cache.capacity


def test_frames_are_matched_by_their_pixels_and_never_cut() -> None:
    from transformers import DynamicCache

    image = 9
    ids = torch.tensor([1, 2, image, image, image, 3, 4, image, image, 5, 6])
    assert _image_starts(ids, image, [3, 2]) == [2, 7]
    with pytest.raises(ValueError, match="placeholders"):
        _image_starts(ids, image, [3, 3])
    red, blue = (frame(Image.new("RGB", (8, 8), color), 3) for color in ("red", "blue"))
    assert red != blue and red == frame(Image.new("RGB", (8, 8), "red"), 3)
    store = PrefixCache(capacity=2)
    kept = DynamicCache()
    for layer in range(2):
        kept.update(torch.zeros(1, 2, 10, 4), torch.zeros(1, 2, 10, 4), layer)
    store._keep(_Row(ids, 9, (red, blue), kept))  # a prompt of 9 tokens, 2 written after it
    # The same tokens over another first frame: nothing before that frame is shared but the two text tokens.
    cache, length = store._take(ids, [2, 7], [blue, blue], None)
    assert length == 2 and cache.get_seq_length() == 2 and len(store) == 1  # copied: the row stays
    cache, length = store._take(ids, [2, 7], [red, red], None)
    assert length == 7 and cache is not kept and len(store) == 1  # up to the second frame, copied
    cache, length = store._take(ids, [2, 7], [red, blue], None)
    assert length == 10 and cache is kept and len(store) == 0  # its own next turn: handed over


def test_real_episodes_reuse_their_turns(synth_video: Any, tmp_path: Path, one_torch_thread: None) -> None:
    """The shipped model over eval episodes in three concurrent workers: the same episodes as without the cache,
    with most of every later prompt taken from it."""
    from medscope.agent.backends.batching import BatchingBackend
    from medscope.agent.loop import AgentConfig
    from medscope.eval.runner import run_samples
    from medscope.models import builtin_model_path
    from medscope.suite.build import BuildConfig, build
    from medscope.suite.records import read_jsonl

    build(BuildConfig(source="synthclin", annotations=str(synth_video.annotation_path), out=str(tmp_path / "suite"),
                      workers=1))
    samples = list(read_jsonl(tmp_path / "suite" / "samples.jsonl"))[:4]
    cached = HFBackend.from_pretrained(builtin_model_path(), threads=1)
    plain = HFBackend(cached.model, cached.processor, name=cached.name, prefix_cache=False)
    episodes = {}
    for name, backend in (("cached", cached), ("plain", plain)):
        batcher = BatchingBackend(backend, size=3)
        records = run_samples(samples, lambda _sample, b=batcher: b, tmp_path / name / "results.jsonl",
                              AgentConfig(), run="hf", workers=3)
        episodes[name] = {r["id"]: [t["raw"] for t in r["episode"]["turns"]] for r in records}
    assert episodes["cached"] == episodes["plain"]
    assert sum(len(turns) > 1 for turns in episodes["cached"].values()) >= 2  # later turns were there to reuse
    assert cached.prefix_cache is not None and cached.prefix_cache.reused > cached.prefix_cache.encoded
    # A turn continuing its episode took the episode's row over; a new episode copied the shared start (system
    # prompt) from another's, which stayed: one row per episode is left.
    assert len(cached.prefix_cache) == len(samples)


def test_the_image_cache_processes_each_frame_once(models: dict[str, Path]) -> None:
    """The processor behind ``ImageCache`` gives what the stock one gives, turn after turn of frames shown again,
    while its image processor sees each new frame once."""
    from medscope.agent.backends.prefix_cache import ImageCache
    from medscope.agent.backends.processors import load_processor

    cached, stock = load_processor(models["qwen3_vl"]), load_processor(models["qwen3_vl"])
    seen: list[int] = []

    class Counting:  # the stock image processor, counting the images it is given
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            if name == "inner":
                raise AttributeError(name)
            return getattr(self.inner, name)

        def __call__(self, images: Any, **kwargs: Any) -> Any:
            seen.append(len(images))
            return self.inner(images, **kwargs)

    cached.image_processor = ImageCache(Counting(cached.image_processor), capacity=8)
    convo = _first_turns()[1]
    for turn in range(3):
        images = [part["image"] for m in convo for part in m["content"] if part["type"] == "image"]
        text = stock.apply_chat_template(convo, tokenize=False, add_generation_prompt=True)
        ours = cached(text=[text], images=images, return_tensors="pt")
        theirs = stock(text=[text], images=images, return_tensors="pt")
        assert ours.keys() == theirs.keys()
        for key in theirs:
            assert torch.equal(ours[key], theirs[key]), key
        convo.append({"role": "user", "content": _frames(2 + turn, 60 + turn, (64 + 16 * turn, 48))})
    assert seen == [4, 2, 3]  # the first turn's four frames, then only each turn's new ones
    assert len(cached.image_processor._rows) == 9  # never fewer than the last call's own frames
    cached.image_processor([images[0]], return_tensors="pt")
    assert len(cached.image_processor._rows) == 8 and seen == [4, 2, 3]  # a seen frame; the oldest dropped
    backend = HFBackend.from_pretrained(models["qwen3_vl"], threads=1)  # encodes through a copy with the cache
    assert isinstance(backend._encode.image_processor, ImageCache)
    assert not isinstance(backend.processor.image_processor, ImageCache)
    assert "Qwen3VLProcessor" in repr(backend.processor)  # the stock processor, to save or describe
