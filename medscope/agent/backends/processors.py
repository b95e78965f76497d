"""Loading Qwen-VL processors on machines without torchvision (this one has no CPU build of it).

transformers 5.x gives every Qwen-VL processor a mandatory video processor, and every video processor needs
torchvision: without it even ``Qwen3VLProcessor(...)`` fails, and so does ``AutoProcessor.from_pretrained``
(transformers issues #43986, #48556). medscope sends frames as timestamped *images*, never as video, so an
image-and-text processor is all it needs. ``image_only`` makes that variant as a subclass that lists no video
processor, named like its base so saved folders stay stock and load anywhere, with or without torchvision.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import transformers
from PIL import Image
from transformers import ProcessorMixin
from transformers.utils import is_torchvision_available

from medscope.agent.backends.openai import smart_resize

Geometry = tuple[int, int, int]  # (side factor, min pixels, max pixels): what ``smart_resize`` needs


def image_geometry(processor: Any) -> Geometry | None:
    """How ``processor`` resizes an image (a Qwen-VL image processor: patch × merge factor, pixel bounds), or None
    for a processor that does not say."""
    images: Any = getattr(processor, "image_processor", None)
    try:
        return (int(images.patch_size * images.merge_size), int(images.size.shortest_edge),
                int(images.size.longest_edge))
    except (AttributeError, TypeError):
        return None


def fit_image(image: Image.Image, geometry: Geometry) -> Image.Image:
    """``image`` at the size the processor will resize it to, resized as it would (bicubic): the model gets the
    same pixels, and a stored frame is as small as the model's (the tiny preset's 64×32, a twenty-fourth of the
    tools' 258×193)."""
    factor, low, high = geometry
    height, width = smart_resize(image.height, image.width, factor=factor, min_pixels=low, max_pixels=high)
    return image if image.size == (width, height) else image.resize((width, height), Image.Resampling.BICUBIC)


@cache
def image_only(processor_cls: type[ProcessorMixin]) -> type[ProcessorMixin]:
    """``processor_cls`` without its video processor (the class itself when torchvision is installed)."""
    if is_torchvision_available():
        return processor_cls

    def get_attributes(cls: type[ProcessorMixin]) -> list[str]:
        return [name for name in processor_cls.get_attributes() if name != "video_processor"]

    # Same name as the base: save_pretrained writes it as processor_class, so the folder names a stock class.
    return type(processor_cls.__name__, (processor_cls,), {"get_attributes": classmethod(get_attributes),
                                                           "__module__": __name__})


def load_processor(folder: str | Path) -> Any:
    """The processor saved in ``folder``, local files only, image-only where torchvision is missing."""
    folder = Path(folder)
    if is_torchvision_available():
        return transformers.AutoProcessor.from_pretrained(folder, local_files_only=True)
    name = None
    for config in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        path = folder / config
        if path.is_file():
            name = json.loads(path.read_text()).get("processor_class") or name
            if name:
                break
    processor_cls = getattr(transformers, name, None) if name else None
    if processor_cls is None or not issubclass(processor_cls, ProcessorMixin):
        return transformers.AutoProcessor.from_pretrained(folder, local_files_only=True)
    return image_only(processor_cls).from_pretrained(folder, local_files_only=True)


_PROBE_ROLE = "medscope_probe_role"


def template_shows_tool_images(render: Callable[[list[dict[str, Any]]], str], image_token: str) -> bool:
    """Whether a chat template (``render``: messages → prompt text) shows images inside ``tool`` messages as tool
    results. Native means the image placeholder appears in the tool message AND the template treats the ``tool``
    role specially; a template that renders every role alike (Qwen2.5-VL's writes ``<|im_start|>tool``, a role
    its model never saw) does not count, and its tool turns are better sent as ``<tool_response>`` user turns."""
    from PIL import Image

    tool: dict[str, Any] = {"role": "tool", "content": [{"type": "text", "text": "[1.00s]"},
                                                        {"type": "image", "image": Image.new("RGB", (32, 32))}]}
    convo: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": "probe"}]}, tool]
    try:
        as_tool = render(convo)
    except Exception:  # the template refuses tool messages
        return False
    try:
        as_other: str | None = render([convo[0], {**tool, "role": _PROBE_ROLE}]).replace(_PROBE_ROLE, "tool")
    except Exception:  # unknown roles are refused, so "tool" is one the template knows
        as_other = None
    return as_tool.count(image_token) == 1 and as_tool != as_other
