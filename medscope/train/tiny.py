"""Offline builders for tiny, randomly initialised Qwen-VL models of the real architectures.

Nothing here downloads anything: the tokenizer is a byte-level BPE trained on the caller's texts with the
``tokenizers`` library, the model is built from its transformers config, and the processor from parameters.
The result exercises exactly the code path a 7B checkpoint uses (chat template, image processor, M-RoPE,
``mm_token_type_ids``), only a few million times smaller. The chat templates are verbatim copies of the
official Instruct templates, stored as versioned files next to this module.

    tok = build_tokenizer(texts, chat_template=load_chat_template("qwen3_vl"))
    model = build_tiny_model("qwen3_vl", tok)
    save_tiny(model, build_processor("qwen3_vl", tok), "runs/tiny")
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import transformers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.utils import is_torchvision_available

from medscope.agent.backends.processors import image_only

Arch = Literal["qwen3_vl", "qwen2_5_vl"]

TEMPLATES_DIR = Path(__file__).parent / "templates"

# The agent's protocol tags (medscope.agent.protocol). Added tokens so that each is one token the model can learn to
# emit and the stop strings match whole tokens. Not "special": decoding with skip_special_tokens keeps them.
PROTOCOL_TOKENS: tuple[str, ...] = (
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<answer>",
    "</answer>",
    "<evidence>",
    "</evidence>",
    "<tool_response>",
    "</tool_response>",
)

# The control tokens of Qwen's vocabulary that the chat templates and the Qwen-VL processors use. They get the
# lowest ids, in Qwen's order; the processors look up image/video pads (and Qwen3-VL the vision start/end) by text.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Vision geometry of the real checkpoints: Qwen3-VL uses 16-pixel patches, Qwen2.5-VL 14; both merge 2x2
# patches into one LLM token and pair frames in time (a still image is repeated to fill the temporal patch).
PATCH_SIZE: dict[str, int] = {"qwen3_vl": 16, "qwen2_5_vl": 14}
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
VIDEO_PROCESSOR_TYPES: dict[str, str] = {"qwen3_vl": "Qwen3VLVideoProcessor", "qwen2_5_vl": "Qwen2VLVideoProcessor"}


def _check_arch(arch: str) -> None:
    if arch not in PATCH_SIZE:
        raise ValueError(f"unknown arch {arch!r}: expected one of {sorted(PATCH_SIZE)}")


def load_chat_template(arch: Arch) -> str:
    """The official Instruct chat template of ``arch``, read verbatim from ``templates/<arch>.jinja``."""
    _check_arch(arch)
    return (TEMPLATES_DIR / f"{arch}.jinja").read_text(encoding="utf-8")


def build_tokenizer(texts: Iterable[str], *, vocab_size: int = 2000, chat_template: str) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` and wrap it as a transformers tokenizer with Qwen's control tokens.

    Byte-level (like Qwen's own) so that any text, including JSON and digits, encodes without unknown tokens;
    digits are split one by one.
    """
    tok = Tokenizer(models.BPE())
    # Digits one by one, as Qwen's tokenizers split them: "45" and " 45" share their digit tokens, so copying a
    # time the model saw is a copy of digits, not a lookup of merged number tokens.
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, whatever the texts contain
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # Registering them as added tokens makes the pre-tokenizer keep each one whole instead of splitting "<|".
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in PROTOCOL_TOKENS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",  # the end of an assistant turn, as in Qwen's Instruct checkpoints
        pad_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def _token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    ids = {}
    for key, token in {
        "image_token_id": "<|image_pad|>",
        "video_token_id": "<|video_pad|>",
        "vision_start_token_id": "<|vision_start|>",
        "vision_end_token_id": "<|vision_end|>",
    }.items():
        token_id = tokenizer.convert_tokens_to_ids(token)
        if not isinstance(token_id, int) or token_id == tokenizer.unk_token_id:
            raise ValueError(f"tokenizer lacks the control token {token}; build it with build_tokenizer()")
        ids[key] = token_id
    return ids


def build_tiny_model(
    arch: Arch,
    tokenizer: PreTrainedTokenizerFast,
    *,
    hidden_size: int = 64,
    layers: int = 2,
    vision_hidden: int = 32,
    vision_layers: int = 1,
    rope_theta: float | None = None,
    seed: int = 0,
    text_overrides: Mapping[str, Any] | None = None,
    vision_overrides: Mapping[str, Any] | None = None,
) -> PreTrainedModel:
    """A randomly initialised ``Qwen3VLForConditionalGeneration`` / ``Qwen2_5_VLForConditionalGeneration``
    whose vocabulary and special token ids match ``tokenizer``.

    ``rope_theta`` defaults to the real checkpoint's (5e6 for Qwen3-VL, 1e6 for Qwen2.5-VL), made for 256k-token
    contexts; a tiny model trained on a few thousand tokens tells near positions apart (which copying a label
    needs) far sooner with 1e4.

    ``text_overrides`` / ``vision_overrides`` replace entries of the two sub-configs last, e.g. a real checkpoint's
    head counts and widths, so the same builder makes a randomly initialised model of a real size."""
    _check_arch(arch)
    heads = max(1, hidden_size // 16)  # head_dim 16 keeps M-RoPE's three sections non-trivial
    head_dim = hidden_size // heads
    half = head_dim // 2
    # M-RoPE splits each head's rotary frequencies into time/height/width sections; they must sum to head_dim/2.
    mrope_section = [half - 2 * (half // 4), half // 4, half // 4]
    special = _token_ids(tokenizer)
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.pad_token_id
    text: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "max_position_embeddings": 8192,
        "pad_token_id": pad_id,
        # The tokenizer's eos, as generate() reads it below; without it in the config a Trainer "aligns" it and
        # warns on every SFT run, and the saved checkpoints differ from the one built here.
        "eos_token_id": eos_id,
    }
    vision_heads = max(1, vision_hidden // 16)
    vision: dict[str, Any] = {
        "depth": vision_layers,
        "hidden_size": vision_hidden,
        "intermediate_size": 2 * vision_hidden,
        "num_heads": vision_heads,
        "patch_size": PATCH_SIZE[arch],
        "spatial_merge_size": MERGE_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "out_hidden_size": hidden_size,  # the merger projects straight into the LLM's width
    }
    torch.manual_seed(seed)
    if arch == "qwen3_vl":
        text |= {
            "head_dim": head_dim,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": rope_theta or 5_000_000.0,
                "mrope_section": mrope_section,
                "mrope_interleaved": True,
            },
        }
        # DeepStack feeds features of these vision layers into the first LLM layers; keep one, the last.
        vision |= {"num_position_embeddings": 256, "deepstack_visual_indexes": [vision_layers - 1]}
        config_cls: type[PretrainedConfig] = Qwen3VLConfig
        model_cls: type[PreTrainedModel] = Qwen3VLForConditionalGeneration
    else:  # qwen2_5_vl
        text |= {
            "bos_token_id": pad_id,
            "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta or 1_000_000.0,
                                "mrope_section": mrope_section},
        }
        # Window attention everywhere except the listed layers; with one layer, make it the full-attention one.
        vision |= {"fullatt_block_indexes": [vision_layers - 1], "window_size": 112, "hidden_act": "silu"}
        config_cls, model_cls = Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    text, vision = text | dict(text_overrides or {}), vision | dict(vision_overrides or {})
    model = model_cls(config_cls(text_config=text, vision_config=vision, tie_word_embeddings=True, **special))
    # generate() reads these: stop at the end of the assistant turn, pad with <|endoftext|>.
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = pad_id
    model.generation_config.bos_token_id = pad_id
    model.generation_config.do_sample = False
    return model.eval()


def video_geometry(images: Any) -> dict[str, Any]:
    """The video processor settings that match ``images`` (an image processor): patches, merge and normalisation."""
    return {**{key: getattr(images, key) for key in ("patch_size", "temporal_patch_size", "merge_size")},
            "image_mean": list(images.image_mean), "image_std": list(images.image_std)}


def build_processor(
    arch: Arch,
    tokenizer: PreTrainedTokenizerFast,
    *,
    patch_size: int | None = None,
    min_pixels: int = 32 * 32,
    max_pixels: int = 256 * 256,
) -> ProcessorMixin:
    """The matching ``Qwen3VLProcessor`` / ``Qwen2_5_VLProcessor`` with a PIL image processor (no torchvision
    needed). Without torchvision it has no video processor (see ``medscope.agent.backends.processors``); with it,
    as on most GPU machines, the stock class requires one, so it gets one of the images' geometry."""
    _check_arch(arch)
    patch = patch_size or PATCH_SIZE[arch]
    # Qwen3-VL normalises with mean=std=0.5; Qwen2.5-VL with the CLIP statistics (the class default).
    norm = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]} if arch == "qwen3_vl" else {}
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=patch,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
        merge_size=MERGE_SIZE,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        **norm,
    )
    processor_cls = image_only(Qwen3VLProcessor if arch == "qwen3_vl" else Qwen2_5_VLProcessor)
    videos: dict[str, Any] = {}
    if is_torchvision_available():  # then the stock class needs a video processor: the images' geometry
        video_cls = getattr(transformers, VIDEO_PROCESSOR_TYPES[arch])
        videos["video_processor"] = video_cls(**video_geometry(image_processor))
    return processor_cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template,
                         **videos)


def save_tiny(model: PreTrainedModel, processor: ProcessorMixin, out_dir: str | Path) -> Path:
    """Write model, tokenizer, image processor and chat template so that ``AutoModelForImageTextToText`` and
    ``AutoProcessor`` load them back with ``local_files_only=True``.

    Also writes the video processor config a stock processor needs where torchvision is installed (the same
    geometry as the images), so the folder loads there too, e.g. into vLLM or TRL on a GPU machine.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    video = {
        "video_processor_type": VIDEO_PROCESSOR_TYPES[model.config.model_type],
        "processor_class": type(processor).__name__,
        **video_geometry(processor.image_processor),
    }
    (out / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2) + "\n", encoding="utf-8")
    return out
