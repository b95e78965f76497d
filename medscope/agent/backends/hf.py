"""The transformers backend: a local vision-language model (Qwen2.5-VL, Qwen3-VL, medscope-tiny) driven in-process.

The conversation is rendered by the model's own chat template, its images go through the model's own processor
into ``pixel_values``, and ``model.generate`` writes the next assistant turn. The only adaptation is for templates
that cannot show images inside ``tool`` messages: those conversations are rewritten with
``tool_messages_as_user`` first, so the observation frames always reach the model.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medscope.agent.backends.base import (
    BackendError,
    Message,
    Request,
    message_images,
    tool_messages_as_user,
    truncate_at_stop,
)
from medscope.agent.backends.prefix_cache import ImageCache, PrefixCache, row_frames, supports_prefix_cache
from medscope.agent.grammar import TurnFormat, longest_ending, number_fits, time_slot, turn_grammar
from medscope.agent.protocol import model_prompt, tool_schemas


class HFBackend:
    """A ``Backend`` over a transformers image-text-to-text model and its processor.

    After each ``generate`` call ``last_prompt_stats`` says what the model was shown: ``images`` (sent),
    ``grid_rows`` (rows of ``image_grid_thw``, one per image the processor encoded), ``image_token_count``
    (image placeholder tokens in the prompt), ``expected_image_tokens`` (``sum(t*h*w) / merge**2``),
    ``prompt_tokens`` and ``new_tokens``.
    """

    def __init__(
        self, model: Any, processor: Any, *, name: str, do_sample: bool = False, temperature: float = 1.0,
        prefix_cache: bool = True,
    ) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.name = name
        self.do_sample = do_sample
        self.temperature = temperature
        self.last_prompt_stats: dict[str, int] = {}
        self.last_prompt = ""  # the rendered prompt of the last call, for debugging and tests
        self.prompt = model_prompt(model.config)  # the system prompt it was trained with (``protocol.PROMPTS``)
        self._tool_images_native: bool | None = None  # probed on first use
        self.image_token: str = getattr(processor, "image_token", "<|image_pad|>")
        self.image_token_id: int = self.tokenizer.convert_tokens_to_ids(self.image_token)
        # Token ids that end a turn or pad it: dropped from the decoded text. Everything else, our protocol tags
        # included, is kept (decoding with skip_special_tokens=True could drop tags registered as special).
        ends: set[int] = set()
        for source in (model.generation_config.eos_token_id, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id):
            if source is not None:
                ends.update(source if isinstance(source, (list, tuple)) else [source])
        self._end_ids = ends
        self._end_texts = [t for t in self.tokenizer.convert_ids_to_tokens(sorted(ends)) if t]
        self.constraints = TurnConstraints(self.tokenizer)
        # Each conversation's cache, kept between its turns (``prefix_cache``); None where the model's cache
        # cannot be cut back and padded, or when asked not to.
        self.prefix_cache = PrefixCache() if prefix_cache and supports_prefix_cache(model) else None
        # What turns prompts and frames into model inputs: with the cache, a copy of the processor whose image
        # processor handles each frame once (``self.processor`` itself stays stock, to save or describe).
        self._encode = processor
        if self.prefix_cache is not None:
            self._encode = copy.copy(processor)
            self._encode.image_processor = ImageCache(processor.image_processor)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: str = "auto", dtype: str = "auto", attn_implementation: str | None = None,
        threads: int = 0, name: str | None = None, **kwargs: Any,
    ) -> HFBackend:
        """Load a model folder (``save_pretrained`` output) or a Hugging Face Hub id (from the local cache when
        ``HF_HUB_OFFLINE=1``) onto ``device`` in ``dtype``; see ``BackendOptions`` for the choices."""
        import torch
        from transformers import AutoModelForImageTextToText

        where = resolve_device(device)
        folder = Path(path) if Path(path).exists() else hub_snapshot(str(path))
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{str(path)!r} is not a model folder (no config.json there); give a folder written by "
                "save_pretrained (e.g. by `medscope train`) or a Hub id such as Qwen/Qwen2.5-VL-7B-Instruct"
            )
        load: dict[str, Any] = {"dtype": resolve_dtype(dtype, where), "local_files_only": True}
        # device_map places the weights as they load (a 7B never passes through CPU memory on a GPU machine);
        # "auto" spreads a model larger than one GPU over all of them.
        load["device_map"] = "auto" if where == "cuda" else where
        if attn_implementation:
            load["attn_implementation"] = attn_implementation
        model = AutoModelForImageTextToText.from_pretrained(folder, **load)
        processor = _load_processor(folder)
        model.eval()
        if where == "cpu":
            torch.set_num_threads(cpu_threads(threads, sum(p.numel() for p in model.parameters())))
        return cls(model, processor, name=name or (str(path) if folder != Path(path) else folder.name), **kwargs)

    def identity(self) -> dict[str, str]:
        return {"backend": "hf", "model": self.name}

    # -- prompt -------------------------------------------------------------------------------------------------

    def _render(self, messages: Sequence[Message]) -> str:
        # The tool schemas go to the template too (with the full prompt), as SFT and GA-GRPO training render
        # them: a model sees the same system prompt at inference as in training.
        render = self.processor if getattr(self.processor, "chat_template", None) else self.tokenizer
        return render.apply_chat_template(list(messages), tools=tool_schemas(self.prompt), add_generation_prompt=True,
                                          tokenize=False)

    @property
    def tool_images_native(self) -> bool:
        """Whether the chat template shows images inside ``tool`` messages as tool results.

        Rendered once on a probe conversation. Native means the image placeholder appears in the tool message AND
        the template treats the ``tool`` role specially; a template that renders every role alike (Qwen2.5-VL's
        writes ``<|im_start|>tool``, a role its model never saw) does not count, and gets the user-turn rewrite.
        """
        if self._tool_images_native is None:
            from medscope.agent.backends.processors import template_shows_tool_images

            self._tool_images_native = template_shows_tool_images(self._render, self.image_token)
        return self._tool_images_native

    # -- generation ---------------------------------------------------------------------------------------------

    def generate(self, messages: Sequence[Message], *, stop: Sequence[str], max_new_tokens: int,
                 turn: TurnFormat | None = None) -> str:
        return self.generate_batch([Request(messages, tuple(stop), max_new_tokens, turn)])[0]

    def generate_batch(self, requests: Sequence[Request]) -> list[str]:
        """The next turn of each conversation in ``requests``, decoded together (prompts padded on the left): a
        decoding step of eight rows costs less than eight steps of one (the tiny model on one CPU thread: 2.5x one
        row's time; ``BatchingBackend`` gathers concurrent episodes' turns). Requests that differ in stop strings or
        token budget run as separate batches, in order. ``last_prompt_stats`` then describes the last request."""
        groups: dict[tuple[tuple[str, ...], int], list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault((tuple(request.stop), request.max_new_tokens), []).append(i)
        texts: list[str] = [""] * len(requests)
        for (stop, max_new_tokens), rows in groups.items():
            batch = self._generate_rows([requests[i] for i in rows], stop, max_new_tokens)
            for i, text in zip(rows, batch, strict=True):
                texts[i] = text
        return texts

    def _generate_rows(self, requests: Sequence[Request], stop: tuple[str, ...], max_new_tokens: int) -> list[str]:
        import torch

        convos = [list(r.messages) if self.tool_images_native else tool_messages_as_user(r.messages)
                  for r in requests]
        per_row = [[image for message in convo for image in message_images(message)] for convo in convos]
        prompts = [self._render(convo) for convo in convos]
        self.last_prompt = prompts[-1]
        for prompt, images in zip(prompts, per_row, strict=True):
            placeholders = prompt.count(self.image_token)
            if placeholders and placeholders != len(images):  # e.g. Qwen3-VL's template drops system-message images
                raise BackendError(
                    f"the chat template rendered {placeholders} image placeholders for {len(images)} images; "
                    "images are only supported in user, assistant and tool messages"
                )
        images = [image for row in per_row for image in row]
        # Left padding: every row's next token comes at the same position, as generate needs.
        inputs = self._encode(text=prompts, images=images or None, return_tensors="pt", padding=True,
                              padding_side="left")
        # Everything the processor returns goes to generate: Qwen3-VL needs mm_token_type_ids with the images.
        inputs = inputs.to(self.model.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        input_ids = inputs["input_ids"]
        length = int(input_ids.shape[1])
        self.last_prompt_stats = self._stats(inputs, per_row)
        if max_new_tokens <= 0:
            return [""] * len(requests)
        gen: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            gen["temperature"] = self.temperature
        else:  # silence sampling knobs a checkpoint's generation_config may carry
            gen |= {"temperature": None, "top_p": None, "top_k": None}
        if stop:
            gen |= {"stop_strings": list(stop), "tokenizer": self.tokenizer}
        if any(r.turn is not None for r in requests):
            gen["logits_processor"] = [BatchGrammar([None if r.turn is None else
                                                     self.constraints.processor(r.turn, length, max_new_tokens)
                                                     for r in requests])]
        with torch.inference_mode():
            output = self._decode(inputs, per_row, gen)
        texts = []
        for row in output[:, length:].tolist():
            new_ids = [i for i in row if i not in self._end_ids]
            text = self.tokenizer.decode(new_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            for end in self._end_texts:
                text = text.replace(end, "")
            texts.append(truncate_at_stop(text, stop))
        self.last_prompt_stats["new_tokens"] = len(new_ids)  # the last row's
        return texts

    def _decode(self, inputs: Any, per_row: Sequence[Sequence[Any]], gen: dict[str, Any]) -> Any:
        """``generate`` over the batch: prompts followed by their new tokens. From the rows' kept caches where the
        prefix cache is on (images only: a video's frames are not counted per placeholder here)."""
        if self.prefix_cache is None or "pixel_values_videos" in inputs or inputs["input_ids"].shape[1] < 2:
            return self.model.generate(**inputs, **gen)
        merge = int(getattr(self.processor.image_processor, "merge_size", 1))
        frames = row_frames(per_row, inputs.get("image_grid_thw"), merge)
        start = self.prefix_cache.prepare(self.model, inputs, frames, self.image_token_id)
        output = self.model.generate(**start, **gen, return_dict_in_generate=True)
        self.prefix_cache.keep(self.model, output.sequences, inputs["attention_mask"], output.cache, frames)
        return output.sequences

    def _stats(self, inputs: Any, per_row: Sequence[Sequence[Any]]) -> dict[str, int]:
        """What the last row's model input holds (its images are the last rows of ``image_grid_thw``)."""
        merge = int(getattr(self.processor.image_processor, "merge_size", 1))
        grid, mine = inputs.get("image_grid_thw"), len(per_row[-1])
        rows = None if grid is None or not mine else grid[grid.shape[0] - mine:]
        return {
            "images": mine,
            "grid_rows": 0 if rows is None else int(rows.shape[0]),
            "image_token_count": int((inputs["input_ids"][-1] == self.image_token_id).sum()),
            "expected_image_tokens": 0 if rows is None else int(rows.prod(dim=-1).sum()) // merge**2,
            "prompt_tokens": int(inputs["attention_mask"][-1].sum()),
            "new_tokens": 0,
        }


class TurnConstraints:
    """Grammar processors over one tokenizer, for any decoder that calls ``generate`` (the HF backend, GA-GRPO's
    rollouts): each kind of turn's grammar is compiled once, each token's text decoded once."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._grammar_tokenizer: Any = None  # llguidance's view of the tokenizer, built on first constrained turn
        self._grammars: dict[TurnFormat, str] = {}  # compiled once per kind of turn (an episode has few kinds)
        self._pieces: dict[int, str] = {}

    def processor(self, turn: TurnFormat, prompt_length: int, max_new_tokens: int) -> GrammarProcessor:
        """The processor of one row whose prompt is ``prompt_length`` tokens and whose turn may take
        ``max_new_tokens``: the reasoning must close in time for the longest call or answer to fit."""
        ending = len(self.tokenizer(longest_ending(turn), add_special_tokens=False).input_ids)
        return GrammarProcessor(self.matcher(turn), prompt_length, turn, self.piece,
                                close_by=max_new_tokens - ending - 1)

    def matcher(self, turn: TurnFormat) -> Any:
        """A fresh llguidance matcher of ``turn``'s grammar over this tokenizer."""
        import llguidance
        import llguidance.hf

        if self._grammar_tokenizer is None:
            self._grammar_tokenizer = llguidance.hf.from_tokenizer(self.tokenizer)
        kind = dataclasses.replace(turn, duration=None)  # the grammar does not depend on the video
        if kind not in self._grammars:
            added = self.tokenizer.get_added_vocab()
            self._grammars[kind] = llguidance.LLMatcher.grammar_from_lark(turn_grammar(kind, lambda tag: tag in added))
        matcher = llguidance.LLMatcher(self._grammar_tokenizer, self._grammars[kind], log_level=0)
        if matcher.is_error():  # our grammar is wrong for this tokenizer: a bug to report, not the model's slip
            raise BackendError(f"the protocol grammar does not compile for this tokenizer: {matcher.get_error()}")
        return matcher

    def piece(self, token: int) -> str:
        """The text of one token (cached: the time bounds read the pieces that may come next)."""
        if token not in self._pieces:
            self._pieces[token] = self.tokenizer.decode([token], skip_special_tokens=False,
                                                        clean_up_tokenization_spaces=False)
        return self._pieces[token]


class GrammarProcessor:
    """A transformers logits processor that lets through only the tokens ``matcher``'s grammar allows next.

    ``generate`` calls it before choosing each new token, with every token so far; the ones chosen since the last
    call are fed to the matcher first. Masking (not reranking) keeps every choice the grammar leaves open to the
    model. With ``turn`` and ``piece`` (a token's text), a time being written is also kept in the video and a range's
    end after its start (``grammar.time_slot``), which a grammar cannot say; and from the ``close_by``-th new token
    on, a reasoning still open must close, so that the call or answer fits in the budget (a small model's reasoning
    can loop until the budget ends the turn with neither). One conversation (``BatchGrammar`` holds one per row)."""

    def __init__(self, matcher: Any, prompt_length: int, turn: TurnFormat | None = None,
                 piece: Callable[[int], str] | None = None, close_by: int | None = None) -> None:
        self.matcher = matcher
        self.prompt_length = prompt_length
        self.consumed = 0
        self.turn, self.piece, self.close_by = turn, piece, close_by
        self.text = ""  # the turn so far
        self.opens_tag: Any = None  # per vocabulary id: its piece holds "<" (built at the first close, then reused)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import numpy as np
        import torch

        if input_ids.shape[0] != 1:
            raise ValueError(f"GrammarProcessor constrains one sequence, got a batch of {input_ids.shape[0]}")
        for token in input_ids[0, self.prompt_length + self.consumed:].tolist():
            self.matcher.consume_token(token)
            self.consumed += 1
            if self.piece is not None:
                self.text += self.piece(token)
        if self.matcher.is_error():  # cannot happen when every token came through this mask; decode freely
            return scores
        allowed = torch.from_numpy(np.frombuffer(self.matcher.compute_logit_bias(), dtype=np.uint8).copy() > 0)
        if self.turn is not None and self.piece is not None:
            self._bound_times(allowed)
            if self.close_by is not None and self.consumed >= self.close_by:
                self._close_reasoning(allowed)
        blocked = torch.ones(scores.shape[-1], dtype=torch.bool, device=scores.device)
        size = min(len(allowed), scores.shape[-1])  # an embedding padded past the tokenizer: never allowed
        blocked[:size] = ~allowed[:size].to(scores.device)
        return scores.masked_fill(blocked, float("-inf"))

    def _close_reasoning(self, allowed: Any) -> None:
        """Inside the reasoning, lets through only what ends it: the reasoning holds no ``<``, so every allowed piece
        with one opens the tag that follows (``</think>``, ``<tool_call>``, ``<answer>``)."""
        assert self.piece is not None
        if not self.text.startswith("<think>") or any(tag in self.text for tag in ("</think>", "<tool_call>",
                                                                                    "<answer>")):
            return
        import torch

        if self.opens_tag is None:  # once a turn, not at every step: in the reasoning nearly every id is allowed
            self.opens_tag = torch.tensor(["<" in self.piece(i) for i in range(len(allowed))], dtype=torch.bool)
        closing = allowed & self.opens_tag
        if closing.any():
            allowed &= closing

    def _bound_times(self, allowed: Any) -> None:
        """Inside a time, blocks the pieces the grammar allows that could no longer finish it in bounds (at a number
        only digits, the point and what closes it are allowed: a few tokens to check)."""
        assert self.turn is not None and self.piece is not None
        slot = time_slot(self.turn, self.text)
        if slot is None:
            return
        written, low, high = slot
        ids = allowed.nonzero().flatten().tolist()
        unfit = [i for i in ids if not number_fits(written + self.piece(i), low, high)]
        if len(unfit) < len(ids):  # never block everything: the grammar's choice stands when nothing fits
            allowed[unfit] = False


class BatchGrammar:
    """A batch's logits processor: each row under its own ``GrammarProcessor`` (None: that row decodes freely).
    A row that has finished is fed padding by ``generate``; its matcher then errs and lets everything through,
    which changes nothing (the padding is written whatever the scores)."""

    def __init__(self, rows: Sequence[GrammarProcessor | None]) -> None:
        self.rows = list(rows)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        for i, row in enumerate(self.rows):
            if row is not None:
                scores[i : i + 1] = row(input_ids[i : i + 1], scores[i : i + 1])
        return scores


def _load_processor(folder: str | Path) -> Any:
    from medscope.agent.backends.processors import load_processor

    return load_processor(folder)


SMALL_MODEL_PARAMETERS = 100_000_000
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def hub_snapshot(repo_id: str) -> Path:
    """The local folder of a Hub model: from the cache when ``HF_HUB_OFFLINE=1`` (or nothing else can be had),
    downloaded otherwise. A path that is neither a folder nor an ``org/name`` id is a missing folder."""
    if not HUB_ID.fullmatch(repo_id):
        raise FileNotFoundError(f"{repo_id!r}: no such model folder (and not a Hub id of the form org/name)")
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    try:
        return Path(snapshot_download(repo_id, local_files_only=offline))
    except Exception as exc:  # not cached (offline), not reachable, no such repo: all mean "cannot load it here"
        how = ("HF_HUB_OFFLINE=1 is set, so only the local cache is read" if offline
               else "the Hub could not be reached or has no such model")
        local = f" (there is no folder {repo_id} here either)" if Path(repo_id).parent.is_dir() else ""
        raise BackendError(
            f"cannot load {repo_id!r}: it is not a local folder{local} and {how} ({type(exc).__name__}). Download "
            f"it where there is network (`hf download {repo_id}`), then pass its folder or copy the cache here"
        ) from None


def cpu_threads(requested: int, parameters: int) -> int:
    """Torch threads for a model on the CPU: ``requested`` when given; else one for a model under 100 M
    parameters (its matrices are too small to split: with the cores busy, one thread ran medscope-tiny 1.6x
    faster than two, and 22% slower on an idle machine; ``benchmarks/threads.py``), else torch's own default."""
    import torch

    if requested > 0:
        return requested
    return 1 if parameters < SMALL_MODEL_PARAMETERS else torch.get_num_threads()


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is there, else ``mps`` on Apple silicon, else ``cpu``; others as given."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError(f"--device {device}: torch sees no CUDA GPU here (a CPU build of torch, or no driver); "
                           "use --device cpu, or install a CUDA build of torch")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise ValueError(f"--device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    return device


def resolve_dtype(dtype: str, device: str) -> Any:
    """``auto`` → bfloat16 on a GPU that has it (float16 otherwise, and on mps), float32 on the CPU."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device == "mps" else torch.float32
    choices = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    if dtype not in choices:
        raise ValueError(f"--dtype {dtype!r}: use auto, {', '.join(choices)}")
    return choices[dtype]
