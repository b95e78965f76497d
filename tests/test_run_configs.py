"""Run configs as YAML: the recipes in configs/recipes parse into valid stage configs through the CLI, flags given
after --config win, unknown keys are named; TRL outside the tested range is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from medscope.cli import build_parser, main
from medscope.config import config_from_args, run_config_defaults
from medscope.train.configs import GRPOStageConfig, SFTStageConfig

RECIPES = sorted((Path(__file__).parent.parent / "configs" / "recipes").glob("*.yaml"))


def _parse(argv: list[str]) -> object:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.stage_parser.set_defaults(**run_config_defaults(args.run_config, args.config_cls))
    args = parser.parse_args(argv)
    return config_from_args(args.config_cls, args)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_is_a_valid_stage_config(recipe: Path) -> None:
    command = "grpo" if recipe.stem.endswith("grpo") else "sft"
    config = _parse(["train", command, "--config", str(recipe), "--lr", "3e-6"])
    assert isinstance(config, GRPOStageConfig if command == "grpo" else SFTStageConfig)
    assert config.lr == 3e-6  # the command line wins over the file
    assert config.report_to == "tensorboard" and config.model and config.data and config.out
    if "qwen2.5" in recipe.stem:
        assert (config.lora, config.lora_r, config.lora_alpha) == (True, 64, 128)
    if command == "grpo":
        assert isinstance(config, GRPOStageConfig) and config.group_size == 8 and config.use_vllm


def test_recipes_exist_for_the_papers_model_and_qwen3() -> None:
    names = {p.stem for p in RECIPES}
    for model in ("qwen2.5-vl-7b", "qwen3-vl-2b", "qwen3-vl-8b"):
        assert {f"{model}-sft1", f"{model}-sft2", f"{model}-grpo"} <= names


def test_an_unknown_key_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text("lr: 1.0e-5\nlearning_rate: 3\n")
    assert main(["train", "sft", "--config", str(tmp_path / "bad.yaml")]) == 2
    assert "learning_rate is not a flag here" in capsys.readouterr().err


def test_trl_outside_the_tested_range_is_refused() -> None:
    pytest.importorskip("trl")
    from medscope.train.grpo import UnsupportedVersionError, check_trl

    check_trl()  # the installed one is the tested one
    with pytest.raises(UnsupportedVersionError, match=r"TRL >=1.16,<1.17 .* this is TRL 1.18.0"):
        check_trl("1.18.0")


def test_every_subcommand_help_renders_its_texts_verbatim() -> None:
    """argparse %-formats help texts: a "%" in one (the --threads help says "22% slower") once printed argparse's
    internals instead of the help."""
    parser = build_parser()
    commands = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    pages = {name: sub.format_help() for name, sub in commands.choices.items()}
    assert "22% slower" in pages["eval"]
    for name, page in pages.items():
        assert "option_strings" not in page, name
