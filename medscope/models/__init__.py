"""Built-in models shipped inside the package, usable offline by name.

``medscope-tiny`` is the checkpoint that ``medscope train all --preset tiny`` produced (GA-GRPO stage, on
SynthClin); its model card (``medscope-tiny/README.md``) says exactly how it was made and what it scores. It
is a demonstration model for the protocol and the training recipe, not a clinical one.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

BUILTIN_MODEL = "medscope-tiny"
BUILTIN_MODELS = (BUILTIN_MODEL,)


def builtin_model_path(name: str = BUILTIN_MODEL) -> Path:
    """The folder of a shipped model (``from_pretrained`` loads it like any other)."""
    if name not in BUILTIN_MODELS:
        raise ValueError(f"unknown built-in model {name!r}; built in: {', '.join(BUILTIN_MODELS)}")
    folder = Path(str(resources.files(__package__) / name))
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"the built-in model {name} is missing from {folder} (an install without package data?). Reinstall "
            "medscope, or train it: medscope train all --preset tiny --out runs/tiny, then pass --model runs/tiny/grpo"
        )
    return folder


def resolve_model(model: str | None) -> str:
    """A model argument as a path: empty or a built-in name → the shipped folder (an existing folder of that
    name wins); anything else unchanged."""
    if not model:
        return str(builtin_model_path())
    if model in BUILTIN_MODELS and not Path(model).exists():
        return str(builtin_model_path(model))
    return model
