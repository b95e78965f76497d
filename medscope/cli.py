"""The ``medscope`` command. Each sub-command parses its flags into a config and calls one ``main``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from medscope.config import add_config_arguments, config_from_args, run_config_defaults

# Each optional package, by the name it is imported as, and the extra of pyproject.toml that installs it: a command
# whose extra is missing names the install line instead of ending in a traceback.
EXTRAS = {
    "transformers": "model", "tokenizers": "model", "accelerate": "model", "huggingface_hub": "model",
    "openai": "model", "llguidance": "model",
    "trl": "train", "peft": "train", "datasets": "train", "yaml": "train", "tensorboard": "train",
    "pycocoevalcap": "eval", "matplotlib": "eval",
    "sqlalchemy": "review", "starlette": "review", "uvicorn": "review", "multipart": "review",
    "python_multipart": "review", "psycopg": "postgres",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The install line for the package ``exc`` found missing, or None when it is not one of medscope's extras."""
    top = (exc.name or "").split(".")[0]
    if top == "torch":  # not in any extra: an unpinned torch pulls gigabytes of CUDA wheels on a CPU-only machine
        return ("torch is not installed: install it first, pinned (`pip install torch==2.13.0`; the CPU build on a "
                "machine without a GPU), then the 'model' extra (`pip install -c constraints.txt -e '.[model]'` in a "
                "clone)")
    if top in EXTRAS:
        return (f"{top} is not installed: it comes with the '{EXTRAS[top]}' extra "
                f"(`pip install -c constraints.txt -e '.[{EXTRAS[top]}]'` in a clone)")
    return None


def _synth(args: argparse.Namespace) -> int:
    from medscope.video.synthclin import SynthClinConfig, generate

    video = generate(config_from_args(SynthClinConfig, args), args.out, name=args.name)
    print(f"{video.video_path}\n{video.annotation_path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from medscope.demo import DemoConfig, main

    main(config_from_args(DemoConfig, args))
    return 0


def _ask(args: argparse.Namespace) -> int:
    from medscope.agent.ask import AskConfig, ask
    from medscope.agent.loop import AgentConfig

    episode = ask(args.video, args.question, config_from_args(AskConfig, args), config_from_args(AgentConfig, args))
    evidence = ", ".join(f"[{s:.2f}, {e:.2f}]" for s, e in episode.evidence) or "none"
    print(f"answer: {episode.answer}\nevidence ({episode.evidence_source}): {evidence}")
    print(f"cost: {episode.tool_calls} tool calls, {episode.frames_viewed} frames, {episode.seconds:.2f}s")
    return 0


def _review(args: argparse.Namespace) -> int:
    from medscope.review.config import ReviewConfig
    from medscope.review.workspace import main

    return main(config_from_args(ReviewConfig, args), args.cases)


def _suite_build(args: argparse.Namespace) -> int:
    import logging

    from medscope.suite.build import BuildConfig, build, funnel_markdown

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    config = config_from_args(BuildConfig, args)
    table = build(config)
    print(funnel_markdown(table))
    print(f"wrote {config.out}/samples.jsonl, trajectories.jsonl, drops.jsonl, funnel.json, README.md")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from medscope.eval.runner import EvalConfig, evaluate, rescore
    from medscope.eval.tables import markdown, write_tables

    config = config_from_args(EvalConfig, args)
    runs = rescore(config) if config.rescore else evaluate(config)
    summaries = write_tables(runs, config.out)
    print(markdown(summaries))
    print(f"wrote {config.out}/results.jsonl, baseline*.jsonl, tables.md, tables.json, frames_vs_score.png")
    return 0


def _turns(args: argparse.Namespace) -> int:
    from medscope.eval.turns import TurnsConfig, run, table

    config = config_from_args(TurnsConfig, args)
    print(table(run(config)), end="")
    print(f"wrote {config.out}/turns.jsonl, turns.md")
    return 0


def _merge(args: argparse.Namespace) -> int:
    if args.kind == "eval":
        from medscope.eval.runner import merge
        from medscope.eval.tables import markdown, write_tables

        print(markdown(write_tables(merge(args.out, args.shards), args.out)))
    else:
        from medscope.suite.build import funnel_markdown
        from medscope.suite.build import merge as merge_suite

        print(funnel_markdown(merge_suite(args.out, args.shards)))
    print(f"merged {len(args.shards)} shards into {args.out}")
    return 0


def _train_sft(args: argparse.Namespace) -> int:
    from medscope.train.configs import SFTStageConfig
    from medscope.train.sft import main

    print(main(config_from_args(SFTStageConfig, args)))
    return 0


def _train_grpo(args: argparse.Namespace) -> int:
    from medscope.train.configs import GRPOStageConfig
    from medscope.train.grpo import main

    print(main(config_from_args(GRPOStageConfig, args)))
    return 0


def _train_all(args: argparse.Namespace) -> int:
    from medscope.train.pipeline import PipelineConfig, main

    main(config_from_args(PipelineConfig, args))
    return 0


def build_parser() -> argparse.ArgumentParser:
    # Config classes are imported here, not at module import, so `medscope --help` stays instant.
    from medscope.agent.ask import AskConfig
    from medscope.agent.loop import AgentConfig
    from medscope.demo import DemoConfig
    from medscope.eval.runner import EvalConfig
    from medscope.eval.turns import TurnsConfig
    from medscope.review.config import ReviewConfig
    from medscope.suite.build import BuildConfig
    from medscope.train.configs import GRPOStageConfig, SFTStageConfig
    from medscope.train.pipeline import PipelineConfig
    from medscope.video.synthclin import SynthClinConfig

    parser = argparse.ArgumentParser(prog="medscope", description="Think with clinical videos.")
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="generate a SynthClin video and its annotation JSON")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--name", default=None, help="file stem (default: synthclin_s<seed>_<minutes>m)")
    add_config_arguments(synth, SynthClinConfig)
    synth.set_defaults(run=_synth)

    ask = sub.add_parser("ask", help="ask one question about one video")
    ask.add_argument("video", help="video file")
    ask.add_argument("question", help="the question, in quotes")
    add_config_arguments(ask, AskConfig)
    add_config_arguments(ask, AgentConfig)
    ask.set_defaults(run=_ask)

    suite = sub.add_parser("suite", help="build ClinVideoSuite samples and trajectories")
    suite_sub = suite.add_subparsers(dest="suite_command", required=True)
    suite_build = suite_sub.add_parser("build", help="adapt → generate → filter → trajectories")
    add_config_arguments(suite_build, BuildConfig)
    suite_build.set_defaults(run=_suite_build)

    evaluate = sub.add_parser("eval", help="run a backend (and the uniform baseline) over samples; tables")
    add_config_arguments(evaluate, EvalConfig)
    evaluate.set_defaults(run=_eval)

    turns = sub.add_parser("turns", help="each turn of the reference trajectories written by the model from the "
                                         "reference conversation: at which step it loses the evidence")
    add_config_arguments(turns, TurnsConfig)
    turns.set_defaults(run=_turns)

    merge = sub.add_parser("merge", help="put the output folders of --shard K/N runs back together")
    merge.add_argument("kind", choices=["eval", "suite"], help="what the shards ran")
    merge.add_argument("--out", required=True, help="the merged folder")
    merge.add_argument("shards", nargs="+", help="the --out folder of each shard, 1..N")
    merge.set_defaults(run=_merge)

    train = sub.add_parser("train", help="SFT stages 1-2, GA-GRPO stage 3, or the whole recipe")
    train_sub = train.add_subparsers(dest="train_command", required=True)
    for name, config_cls, run, text in (
        ("sft", SFTStageConfig, _train_sft, "stage 1 (warm-up) or 2 (VCoT cold start) supervised fine-tuning"),
        ("grpo", GRPOStageConfig, _train_grpo, "stage 3: GA-GRPO with the video tools in the loop"),
        ("all", PipelineConfig, _train_all, "data → suite → SFT 1-2 → GA-GRPO (+ ablations) → eval"),
    ):
        stage = train_sub.add_parser(name, help=text)
        add_config_arguments(stage, config_cls)
        if name != "all":  # a stage's flags as YAML: a recipe in configs/recipes/, or a run's run_config.yaml
            stage.add_argument("--config", dest="run_config", default=None,
                               help="YAML of this stage's flags; flags given on the command line win")
        stage.set_defaults(run=run, config_cls=config_cls, stage_parser=stage)

    review = sub.add_parser("review", help="the clinician's review workspace: play the evidence, judge, correct, "
                                           "export (a local web app)")
    review.add_argument("cases", nargs="*", help="eval output folders, `ask --trace` files, or folders holding them")
    add_config_arguments(review, ReviewConfig)
    review.set_defaults(run=_review)

    demo = sub.add_parser("demo", help="generate a video and show the tools on it")
    add_config_arguments(demo, DemoConfig)
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from medscope.agent.backends.base import BackendError
    from medscope.eval.judge import JudgeError
    from medscope.video.errors import VideoError

    try:
        if getattr(args, "run_config", None):  # the file's values become defaults; explicit flags still win
            args.stage_parser.set_defaults(**run_config_defaults(args.run_config, args.config_cls))
            args = parser.parse_args(argv)
        return int(args.run(args))
    except (VideoError, BackendError, JudgeError, ValueError, FileNotFoundError) as exc:
        print(f"medscope {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if (line := missing_extra(exc)) is None:
            raise
        print(f"medscope {args.command}: error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
