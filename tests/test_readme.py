"""Every shell example in README.md runs as written, or is named here with the reason it cannot run in a test.

A small parser reads the README's examples (fenced ```bash/```sh/```shell/```console blocks and indented command
lines), so an example added to the README is picked up without touching this file; an example that is neither
in RUNS nor in NOT_RUN fails the fast test until someone classifies it. Every example, run or not, is checked
for syntax: its `medscope` subcommand exists, `medscope <subcommand> --help` lists every `--flag` it uses, and
medscope's own parser accepts the whole command line; a `make` target exists in the Makefile; a repository
file it names exists. Commands quoted inline in the prose (`medscope ask --help`) are fragments, not examples:
their subcommand and flags are checked, nothing more.

The runnable examples run for real (slow: about 1.5 minutes on 2 cores) as subprocesses in one temporary
folder prepared as the README says: `make demo` first, reproduced by running its Makefile recipe there, then
each example in README order, since later examples read what earlier ones wrote (`runs/suite` → `eval`).
They are checked for exit status 0 and for the files they say they write, never for what a model answers:
the built-in model changes, its answers are other tests' business.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from medscope.agent.trace import read_episodes
from medscope.cli import build_parser
from medscope.suite.records import read_jsonl

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
VENV_BIN = Path(sys.executable).parent  # the venv that runs the tests provides `medscope`, as `make` installs it
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
COMMAND_PREFIXES = ("medscope ", "make ", "python ", ".venv/bin/")
# Top-level folders of the repository: a path under them in an example must exist (a recipe, a config, a script).
# runs/ is not among them: it is where examples write.
REPO_DIRS = ("configs", "benchmarks", "medscope", "tests", "docs")
# Sample values for the shell variables examples use, so medscope's parser sees a command line a shell would give.
SHELL_VARS = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4"}


@dataclass(frozen=True)
class Example:
    text: str  # the logical command line, continuation lines joined, as a shell would run it
    line: int  # README line where it starts
    kind: str  # "block" (fenced or indented: an example) or "mention" (inline code in the prose)

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text, comments=True)

    @property
    def key(self) -> str:
        """The command without its comment, spaced and quoted one way: what RUNS and NOT_RUN are keyed by."""
        return shlex.join(self.argv)


def _logical_lines(lines: list[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """Join `\\`-continued lines into one command, keeping the line number of its first line."""
    start, parts = 0, list[str]()
    for number, line in lines:
        if not parts:
            start = number
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1].strip())
            continue
        parts.append(line.strip())
        yield start, " ".join(p for p in parts if p)
        parts = []
    if parts:
        yield start, " ".join(p for p in parts if p)


def extract_examples(markdown: str) -> list[Example]:
    """Shell examples and inline command mentions, in README order."""
    examples: list[Example] = []
    prose: list[str] = []  # the text outside fences, for inline code spans
    fence: str | None = None  # the open fence's language ("" for none)
    block: list[tuple[int, str]] = []
    indented: list[tuple[int, str]] = []
    lines = markdown.splitlines()

    def flush_indented() -> None:
        examples.extend(Example(text, number, "block") for number, text in _logical_lines(indented))
        indented.clear()

    for number, line in enumerate(lines, start=1):
        opening = re.match(r"^\s*```\s*([\w+-]*)", line)
        if fence is None and opening:
            flush_indented()
            fence, block = opening.group(1).lower(), []
            prose.append("")
            continue
        if fence is not None:
            if line.strip().startswith("```"):
                if fence in SHELL_LANGUAGES:
                    examples.extend(Example(text, start, "block") for start, text in _logical_lines(block))
                fence = None
            elif fence == "console":  # a prompt marks a command; other lines are its output
                continuing = bool(block) and block[-1][1].rstrip().endswith("\\")
                if line.startswith("$ "):
                    block.append((number, line[2:]))
                elif continuing:
                    block.append((number, line.removeprefix("> ")))
            elif fence in SHELL_LANGUAGES and line.strip() and not line.strip().startswith("#"):
                block.append((number, line))
            prose.append("")
            continue
        continuing = bool(indented) and indented[-1][1].rstrip().endswith("\\")
        if line.startswith("    ") and (continuing or line.strip().startswith(COMMAND_PREFIXES)):
            indented.append((number, line))
            prose.append("")
            continue
        flush_indented()
        prose.append(line)
    flush_indented()

    # Inline code spans may wrap onto the next line, never across a paragraph.
    text = "\n".join(prose)
    for match in re.finditer(r"(?<!`)`([^`]+)`(?!`)", text):
        span = " ".join(match.group(1).split())
        if "\n\n" not in match.group(1) and span.startswith(COMMAND_PREFIXES):
            examples.append(Example(span, text.count("\n", 0, match.start()) + 1, "mention"))
    return sorted(examples, key=lambda e: e.line)


# --- what the README's examples are --------------------------------------------------------------------------

def _one_episode(path: str, question_index: int) -> Callable[[Path, Example], None]:
    def check(work: Path, example: Example) -> None:
        (episode,) = list(read_episodes(work / path))
        assert episode.question == example.argv[question_index]
    return check


def _html(path: str, *needles: str) -> Callable[[Path, Example], None]:
    def check(work: Path, example: Example) -> None:
        page = (work / path).read_text()
        assert "<html" in page.lower() and all(n in page for n in needles), f"{path} lacks {needles}"
    return check


def _samples(path: str, at_least: int) -> Callable[[Path, Example], None]:
    def check(work: Path, example: Example) -> None:
        assert len(list(read_jsonl(work / path))) >= at_least
    return check


def _results_match_samples(results: str, samples: str) -> Callable[[Path, Example], None]:
    def check(work: Path, example: Example) -> None:
        done = [json.loads(line)["id"] for line in (work / results).read_text().splitlines()]
        assert sorted(done) == sorted(s.id for s in read_jsonl(work / samples))
    return check


def _json(path: str) -> Callable[[Path, Example], None]:
    def check(work: Path, example: Example) -> None:
        json.loads((work / path).read_text())
    return check


@dataclass(frozen=True)
class Run:
    writes: tuple[str, ...]  # paths, relative to the working folder, the command must leave behind
    checks: tuple[Callable[[Path, Example], None], ...] = ()
    serves: str | None = None  # a server: the address it must answer on before it is stopped with Ctrl-C
    page_shows: tuple[str, ...] = field(default=())  # what the served page must contain


DEMO_VIDEO = "synthclin_s20016_3m.mp4"  # what `medscope demo` (seed 20016, 3 minutes) writes

RUNS: dict[str, Run] = {
    "medscope ask runs/demo/synthclin_s20016_3m.mp4 'When does bleeding happen? Answer with the time window(s) "
    "in seconds.' --report out.html --trace out.jsonl":
        Run(writes=("out.html", "out.jsonl"), checks=(_one_episode("out.jsonl", 3), _html("out.html", DEMO_VIDEO))),
    "medscope review runs/demo":
        Run(writes=("runs/demo/review.sqlite",), serves="http://127.0.0.1:8765/", page_shows=(DEMO_VIDEO,)),
    "medscope review --db runs/demo/review.sqlite --export runs/reviewed":
        Run(writes=("runs/reviewed/samples.jsonl", "runs/reviewed/reviews.csv", "runs/reviewed/export.json"),
            checks=(_json("runs/reviewed/export.json"),)),
    "medscope suite build --source synthclin --annotations runs/demo --out runs/suite":
        Run(writes=("runs/suite/samples.jsonl", "runs/suite/trajectories.jsonl", "runs/suite/README.md"),
            checks=(_samples("runs/suite/samples.jsonl", 1),)),
    "medscope eval --samples runs/suite/samples.jsonl --backend oracle --out runs/eval":
        Run(writes=("runs/eval/results.jsonl", "runs/eval/manifest.json", "runs/eval/tables.md"),
            checks=(_results_match_samples("runs/eval/results.jsonl", "runs/suite/samples.jsonl"),)),
    # the built-in model, 8 episodes at once, their turns decoded together
    "medscope eval --samples runs/suite/samples.jsonl --backend hf --workers 8 --baseline none --out runs/local":
        Run(writes=("runs/local/results.jsonl", "runs/local/tables.md"),
            checks=(_results_match_samples("runs/local/results.jsonl", "runs/suite/samples.jsonl"),)),
    "medscope turns --trajectories runs/suite/trajectories.jsonl --out runs/turns":
        Run(writes=("runs/turns/turns.jsonl", "runs/turns/turns.md")),
    "medscope train all --preset smoke --out runs/smoke":
        Run(writes=("runs/smoke/results.md", "runs/smoke/medscope-smoke/config.json",
                    "runs/smoke/medscope-smoke/model.safetensors")),
}

NOT_RUN: dict[str, str] = {
    "make demo": "creates .venv and installs medscope; its recipe (`medscope demo --out runs/demo`) is run here "
                 "once, to prepare the folder the other examples read",
    "make test": "the whole test suite: minutes, and it would run this file again",
    "medscope ask case.mp4 'Which instrument is used?' --backend hf --model ./my-qwen3-vl --device cuda --dtype "
    "bfloat16": "a GPU, a user's model folder and video",
    "medscope ask case.mp4 'Which instrument is used?' --backend hf --model Qwen/Qwen3-VL-8B-Instruct":
        "an 8B model from the Hub cache (nothing is downloaded in tests), a user's video",
    "medscope ask case.mp4 'Which instrument is used?' --backend openai --model Qwen/Qwen3-VL-8B-Instruct "
    "--base-url http://localhost:8000/v1": "a vLLM server on a GPU, a user's video",
    "medscope review runs/eval/m runs/traces --db team.sqlite --videos /data/videos":
        "a team's eval folders and video library; the same import and serving run in `medscope review runs/demo`",
    "medscope suite build --source medvidqa --annotations medvidqa/train.json --videos medvidqa/videos --out "
    "runs/mvqa --judge openai:Qwen/Qwen3-VL-8B-Instruct@http://localhost:8000/v1":
        "MedVidQA's files and videos (not here) and a model server as judge",
    "medscope suite build --source charades --annotations charades_sta_test.txt --lengths Charades_v1_test.csv "
    "--videos Charades_v1 --out runs/charades-test": "Charades-STA's files and videos (not here)",
    "medscope suite build --source cholec80 --annotations cholec80/ --videos cholec80/videos --out runs/cholec80":
        "Cholec80's files and videos (not here)",
    "medscope suite build --source qvhighlights --annotations highlight_val_release.jsonl --videos qvh/videos "
    "--no-trajectories --out runs/qvh-val": "QVHighlights' files and videos (not here)",
    "medscope eval --samples runs/suite/samples.jsonl --backend openai --model M --base-url URL --workers 8 "
    "--out runs/m": "a model server; M and URL are placeholders",
    "vllm serve /models/medscope-7b --port 8000": "a GPU server and a 7B model",
    "medscope eval --samples suite/samples.jsonl --backend openai --model /models/medscope-7b --base-url "
    "http://localhost:8000/v1 --tool-messages native --image-factor 28 --workers 16 --shard "
    "'$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT' --out 'runs/eval/shard$SLURM_ARRAY_TASK_ID'":
        "a vLLM server per node and a SLURM array",
    "medscope merge eval --out runs/eval 'runs/eval/shard*'": "the shards of the SLURM run above",
    "medscope train all --preset tiny --out runs/tiny": "one to two and a half hours of training on a 2-core CPU",
    "medscope train sft --stage 1 --data runs/suite/samples.jsonl --model M --out runs/sft1":
        "M stands for a model folder; `train all --preset smoke` runs this stage on a toy model",
    "medscope train sft --stage 2 --data runs/suite/trajectories.jsonl --model runs/sft1 --out runs/sft2":
        "needs runs/sft1 from the stage-1 example above",
    "medscope train grpo --data runs/suite/samples.jsonl --model runs/sft2 --out runs/grpo '[--no-evidence-reward]' "
    "'[--no-crop-bonus]' '[--coarse-penalty' '0]' '[--grounding-iou]' '[--no-modulation]' '[--std-normalise]' "
    "'[--kl' '0.04]'":
        "needs runs/sft2 from the stage-2 example above; the bracketed flags are options",
    "accelerate launch --config_file configs/accelerate/zero3.yaml -m medscope.cli train sft --config "
    "configs/recipes/qwen2.5-vl-7b-sft1.yaml": "8 GPUs and Qwen2.5-VL-7B",
    "accelerate launch --config_file configs/accelerate/zero3.yaml -m medscope.cli train sft --config "
    "configs/recipes/qwen2.5-vl-7b-sft2.yaml": "8 GPUs and Qwen2.5-VL-7B",
    "accelerate launch --config_file configs/accelerate/zero3.yaml -m medscope.cli train grpo --config "
    "configs/recipes/qwen2.5-vl-7b-grpo.yaml": "8 GPUs and Qwen2.5-VL-7B",
}

EXAMPLES = extract_examples(README.read_text())
BLOCKS = [e for e in EXAMPLES if e.kind == "block"]
MENTIONS = [e for e in EXAMPLES if e.kind == "mention"]


def _env() -> dict[str, str]:
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1")
    env.pop("MEDSCOPE_REVIEW_TOKEN", None)  # a token in the tester's shell would change what `review` serves
    return env


# --- syntax: subcommands, flags, the whole command line ------------------------------------------------------

def _unwrap(token: str) -> str:
    """`[--kl` and `0.04]` (an optional part, as usage lines write it) → `--kl`, `0.04`."""
    return token.removeprefix("[").removesuffix("]")


def _flags(argv: list[str]) -> list[str]:
    return [_unwrap(t).split("=", 1)[0] for t in argv if _unwrap(t).startswith("--")]


def _subcommand(argv: list[str]) -> list[str]:
    """The subcommand path (`suite build`) at the front of medscope's arguments, as its parser defines it."""
    parser, path = build_parser(), list[str]()
    for token in argv:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions:
            break
        choices = actions[0].choices
        command = " ".join(["medscope", *path])
        assert token in choices, f"`{command}` has no subcommand {token!r} (has {sorted(choices)})"
        parser, path = choices[token], [*path, token]
    return path


@functools.cache
def _help(path: tuple[str, ...]) -> str:
    result = subprocess.run([str(VENV_BIN / "medscope"), *path, "--help"], capture_output=True, text=True,
                            env=_env(), timeout=120)
    assert result.returncode == 0, f"`medscope {' '.join(path)} --help` failed: {result.stderr}"
    return result.stdout


def _check_medscope(argv: list[str], *, whole_line: bool) -> None:
    path = _subcommand(argv)
    assert path, "no medscope subcommand"
    usage = _help(tuple(path))
    missing = [f for f in _flags(argv) if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", usage)]
    assert not missing, f"`medscope {' '.join(path)} --help` does not list {missing}"
    if whole_line:  # medscope's own parser must accept it (types, choices, required arguments)
        args = [re.sub(r"\$(\w+)", lambda m: SHELL_VARS[m.group(1)], _unwrap(t)) for t in argv]
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):
            try:
                build_parser().parse_args(args)
            except SystemExit:
                pytest.fail(f"medscope's parser refuses it: {errors.getvalue().strip()}")


def _make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), flags=re.MULTILINE))


def check_syntax(example: Example, *, whole_line: bool) -> None:
    argv = [t.removeprefix(".venv/bin/") for t in example.argv]
    for token in argv:  # a file of the repository that the command names must be there
        if token.split("/", 1)[0] in REPO_DIRS and "/" in token:
            assert (REPO / token).exists(), f"{token} does not exist"
    if argv[0] == "medscope":
        _check_medscope(argv[1:], whole_line=whole_line)
    elif "-m" in argv and argv[argv.index("-m") + 1] == "medscope.cli":  # accelerate launch ... -m medscope.cli
        _check_medscope(argv[argv.index("-m") + 2:], whole_line=whole_line)
    elif argv[0] == "make":
        assert set(argv[1:]) <= _make_targets(), f"the Makefile has no target {set(argv[1:]) - _make_targets()}"
    elif argv[0] in ("python", "python3"):
        script = REPO / argv[1]
        assert script.is_file(), f"{argv[1]} does not exist"
        if _flags(argv):  # only then: --help of a GPU script imports torch
            usage = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                                   cwd=REPO, env=_env(), timeout=120).stdout
            assert all(f in usage for f in _flags(argv)), f"{argv[1]} --help does not list {_flags(argv)}"
    # Other programs (vllm, accelerate) are not installed for tests; their repository paths were checked above.


# --- the fast tests ------------------------------------------------------------------------------------------

def test_the_parser_reads_blocks_console_indented_lines_and_mentions() -> None:
    markdown = "\n".join([
        "Run `medscope ask --help` or `make\nbench`; `medscope/video/` is a folder.",
        "```bash",
        "# a comment line",
        "make demo    # comment",
        "medscope eval --samples s.jsonl \\",
        "    --out runs/e",
        "```",
        "```python",
        "medscope = 1",
        "```",
        "```console",
        "$ medscope synth --out v",
        "wrote v/a.mp4",
        "```",
        "",
        "    .venv/bin/medscope review runs/demo",
        "    not a command",
    ])
    found = [(e.kind, e.key, e.line) for e in extract_examples(markdown)]
    assert found == [
        ("mention", "medscope ask --help", 1), ("mention", "make bench", 1),
        ("block", "make demo", 5), ("block", "medscope eval --samples s.jsonl --out runs/e", 6),
        ("block", "medscope synth --out v", 13), ("block", ".venv/bin/medscope review runs/demo", 17),
    ]


def test_every_readme_example_is_run_or_says_why_not() -> None:
    keys = [e.key for e in BLOCKS]
    unclassified = [f"README.md:{e.line}: {e.key}" for e in BLOCKS if e.key not in RUNS and e.key not in NOT_RUN]
    assert not unclassified, "new README examples: add each to RUNS (with what it writes) or to NOT_RUN (with " \
                             "the reason it cannot run in a test):\n" + "\n".join(unclassified)
    stale = [k for k in [*RUNS, *NOT_RUN] if k not in keys]
    assert not stale, f"no longer in README.md (changed or removed): {stale}"
    assert not set(RUNS) & set(NOT_RUN)
    assert all(reason.strip() for reason in NOT_RUN.values())


@pytest.mark.parametrize("example", BLOCKS, ids=[f"L{e.line}" for e in BLOCKS])
def test_readme_example_syntax(example: Example) -> None:
    check_syntax(example, whole_line=True)


@pytest.mark.parametrize("example", MENTIONS, ids=[f"L{e.line}:{e.key}" for e in MENTIONS])
def test_readme_inline_command_syntax(example: Example) -> None:
    check_syntax(example, whole_line=False)


def _demo_recipe() -> str:
    """`make demo`'s command, with the venv's `medscope`: the fixture runs exactly that."""
    recipe = re.search(r"^demo:.*\n\t(.+)$", (REPO / "Makefile").read_text(), flags=re.MULTILINE)
    assert recipe, "the Makefile has no demo recipe"
    return recipe.group(1).replace("$(VENV)/bin/", "")


def test_make_demo_runs_medscope_demo_into_runs_demo() -> None:
    # The examples read runs/demo/...: the folder the fixture prepares must be the one `make demo` writes.
    assert shlex.split(_demo_recipe()) == ["medscope", "demo", "--out", "runs/demo"]


# --- the slow tests: run them ---------------------------------------------------------------------------------

@dataclass
class Outcome:
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    page: str = ""  # what a server answered


def _port_free(url: str) -> bool:
    host, port = re.match(r"https?://([^:/]+):(\d+)", url).groups()  # type: ignore[union-attr]
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) != 0


def _serve(text: str, url: str, work: Path) -> Outcome:
    """Start the server as written, wait for its page, then stop it as its banner says (Ctrl-C)."""
    started = time.monotonic()
    process = subprocess.Popen(["bash", "-c", f"exec {text}"], cwd=work, env=_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    page = ""
    try:
        deadline = started + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    page = response.read().decode()
                break
            except OSError:
                time.sleep(0.2)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
    return Outcome(process.returncode, stdout, stderr, time.monotonic() - started, page)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Outcome]]:
    """A folder where `make demo` ran, then every runnable example in README order (later ones read earlier
    ones' output)."""
    work = tmp_path_factory.mktemp("readme")
    started = time.monotonic()
    demo = subprocess.run(["bash", "-c", _demo_recipe()], cwd=work, env=_env(), capture_output=True, text=True,
                          timeout=600)
    assert demo.returncode == 0, f"`make demo`'s recipe failed:\n{demo.stderr[-3000:]}"
    outcomes = {"make demo": Outcome(0, demo.stdout, demo.stderr, time.monotonic() - started)}
    for example in BLOCKS:
        run = RUNS.get(example.key)
        if run is None:
            continue
        if run.serves:
            if not _port_free(run.serves):  # another program holds the README's port: it cannot run as written
                outcomes[example.key] = Outcome(None, "", f"{run.serves} is in use", 0.0)
                continue
            outcomes[example.key] = _serve(example.text, run.serves, work)
            continue
        started = time.monotonic()
        result = subprocess.run(["bash", "-c", example.text], cwd=work, env=_env(), capture_output=True,
                                text=True, timeout=600)
        outcomes[example.key] = Outcome(result.returncode, result.stdout, result.stderr,
                                        time.monotonic() - started)
    return work, outcomes


RUN_EXAMPLES = [e for e in BLOCKS if e.key in RUNS]


@pytest.mark.slow
@pytest.mark.parametrize("example", RUN_EXAMPLES, ids=[f"L{e.line}" for e in RUN_EXAMPLES])
def test_readme_example_runs_as_written(example: Example, ran: tuple[Path, dict[str, Outcome]]) -> None:
    work, outcomes = ran
    run, outcome = RUNS[example.key], outcomes[example.key]
    if outcome.returncode is None:
        pytest.skip(f"cannot run as written here: {outcome.stderr}")
    print(f"{outcome.seconds:.1f} s: {example.key}")
    if run.serves:
        assert outcome.page, f"nothing answered at {run.serves}:\n{outcome.stderr[-3000:]}"
        assert all(s in outcome.page for s in run.page_shows), f"the page lacks {run.page_shows}"
        assert outcome.returncode in (0, -signal.SIGINT), outcome.stderr[-3000:]  # Ctrl-C stops it cleanly
    else:
        assert outcome.returncode == 0, f"exit {outcome.returncode}:\n{outcome.stderr[-3000:]}"
    missing = [p for p in run.writes if not (work / p).is_file()]
    assert not missing, f"did not write {missing}"
    for check in run.checks:
        check(work, example)


@pytest.mark.slow
def test_make_demo_writes_the_reports_and_ends_with_the_review_example(ran: tuple[Path, dict[str, Outcome]]) -> None:
    # The README's opening paragraph: one report per policy in runs/demo, and the last line printed is the
    # command that opens the review workspace, which must be the README's own (run above).
    work, outcomes = ran
    demo = outcomes["make demo"]
    print(f"{demo.seconds:.1f} s: make demo's recipe")
    for policy in ("medscope-tiny", "oracle", "uniform"):
        assert (work / "runs/demo" / f"{policy}_report.html").is_file()
    last = demo.stdout.strip().splitlines()[-1].strip()
    assert last in RUNS and RUNS[last].serves, f"make demo's last line {last!r} is not a served README example"
