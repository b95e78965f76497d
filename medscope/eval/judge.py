"""The LLM judge: 1-5 scores for CI, DO, CU, TU (Table 1) and the fully/partially/not answer verdict (R_acc).

**Request shape.** Video-ChatGPT's quantitative evaluation (which SurgVidLM runs with GPT-4o at temperature 0)
asks one question per dimension, so ``Judge.score`` sends **four chat requests** per sample -- correctness of
information (CI), detail orientation (DO), contextual understanding (CU), temporal understanding (TU) -- each a
system message with that dimension's criteria and a user message with the question, the reference ("correct")
answer and the predicted answer, asking for ``{"score": N}`` with an integer N in 1..5. ``Judge.answer`` sends
one request asking for ``{"verdict": "fully" | "partially" | "not"}``, scored 1 / 0.5 / 0. The prompts live in
``medscope/eval/prompts/judge_v1.jinja`` and ``answer_v1.jinja`` (Jinja2, StrictUndefined);
``JUDGE_PROMPT_VERSION`` is recorded in every result. Sampling is the backend's: ``OpenAIBackend`` defaults to
temperature 0, e.g. ``Judge(OpenAIBackend("gpt-4o", base_url="https://api.openai.com/v1"))``.

**Parsing.** A reply is read as JSON (or a Python dict literal, Video-ChatGPT's own format) anywhere in the text,
then as ``score: 4`` / ``verdict: partially`` text, then as a bare ``4`` / ``partially``. A reply that cannot be
read or is out of range gets **one** corrective follow-up (the bad reply and a reminder of the format); a second
bad reply is an error.

**Failure policy.** Nothing is ever scored 0 for a judge that did not judge. With ``optional=False`` (the
default) a failing backend or a twice-unreadable reply raises ``JudgeError``, whose message names the judge's
model and base URL and says how to fix it or to pass ``--judge-optional``. With ``optional=True`` the affected
scores come back as ``None`` with ``error`` saying why; after a backend failure (server down, auth) the judge
stops calling it and every later result is ``None`` with the same reason, so a dead server costs one timeout,
not one per sample.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Protocol

import jinja2

from medscope.agent.backends.base import Message, text_part

JUDGE_PROMPT_VERSION = "1"
DIMENSIONS = ("ci", "do", "cu", "tu")
DIMENSION_NAMES = {
    "ci": "correctness of information",
    "do": "detail orientation",
    "cu": "contextual understanding",
    "tu": "temporal understanding",
}
VERDICTS = {"fully": 1.0, "partially": 0.5, "not": 0.0}
SCORE_RANGE = (1, 5)
OPTIONAL_FLAG = "--judge-optional"

_OBJECT = re.compile(r"\{[^{}]*\}", re.S)
_SCORE_TEXT = re.compile(r"score(?:\s+(?:is|of))?\W{0,5}?(-?\d+(?:\.\d+)?)", re.I)
_BARE_NUMBER = re.compile(r"^\W*(-?\d+(?:\.\d+)?)\W*$")
_VERDICT_TEXT = re.compile(r"verdict\W{0,5}?(fully|partially|not|inconsistent|consistent)\b", re.I)
_BARE_VERDICT = re.compile(r"^\W*(fully|partially|not)(?:\s+consistent)?\W*$", re.I)


class JudgeError(RuntimeError):
    """The judge could not score: its server fails, or it keeps answering outside the format."""


class GeneratingBackend(Protocol):
    """What the judge needs from a backend (``medscope.agent.backends.base.Backend`` satisfies it)."""

    def generate(self, messages: Sequence[Message], *, stop: Sequence[str], max_new_tokens: int) -> str: ...


@dataclass(frozen=True)
class JudgeScores:
    """The four 1-5 scores of one sample; ``None`` is *missing* (see ``error``), never a 0.

    ``raw`` maps each dimension to the judge's replies (the last one is the one scored).
    """

    ci: int | None
    do: int | None
    cu: int | None
    tu: int | None
    raw: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    error: str | None = None
    prompt_version: str = JUDGE_PROMPT_VERSION

    @property
    def complete(self) -> bool:
        return all(getattr(self, d) is not None for d in DIMENSIONS)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the scores, ``judge_error``, ``judge_prompt_version`` and the raw replies."""
        out = asdict(self)
        out["raw"] = {k: list(v) for k, v in self.raw.items()}
        return out


@dataclass(frozen=True)
class AnswerVerdict:
    """The answer-consistency verdict: ``score`` 1 / 0.5 / 0 for fully / partially / not, ``None`` if missing."""

    score: float | None
    verdict: str | None
    raw: tuple[str, ...] = ()
    error: str | None = None
    prompt_version: str = JUDGE_PROMPT_VERSION

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["raw"] = list(self.raw)
        return out


# -- prompts ---------------------------------------------------------------------------------------------------


@cache
def _prompts(name: str) -> Any:
    """The macros of ``prompts/{name}`` (a Jinja2 template module)."""
    source = resources.files("medscope.eval").joinpath("prompts", name).read_text(encoding="utf-8")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
    return env.from_string(source).module


def _render(name: str, macro: str, *args: Any) -> str:
    return str(getattr(_prompts(name), macro)(*args)).strip()


def score_messages(dimension: str, question: str, reference: str, prediction: str) -> list[Message]:
    """The chat request for one dimension (system: criteria; user: the question-answer pair)."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown judge dimension {dimension!r}; choose one of {', '.join(DIMENSIONS)}")
    file = f"judge_v{JUDGE_PROMPT_VERSION}.jinja"
    return [
        {"role": "system", "content": [text_part(_render(file, "score_system", dimension))]},
        {"role": "user", "content": [text_part(_render(file, "score_user", dimension, question, reference,
                                                       prediction))]},
    ]


def answer_messages(question: str, reference: str, prediction: str) -> list[Message]:
    """The chat request for the answer-consistency verdict."""
    file = f"answer_v{JUDGE_PROMPT_VERSION}.jinja"
    return [
        {"role": "system", "content": [text_part(_render(file, "answer_system"))]},
        {"role": "user", "content": [text_part(_render(file, "answer_user", question, reference, prediction))]},
    ]


# -- parsing ---------------------------------------------------------------------------------------------------


def _objects(text: str) -> list[dict[str, Any]]:
    """Every flat ``{...}`` in ``text`` that parses as JSON or as a Python dict literal."""
    found = []
    for match in _OBJECT.finditer(text):
        chunk = match.group(0)
        for loader in (json.loads, ast.literal_eval):
            try:
                value = loader(chunk)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(value, dict):
                found.append({str(k).lower(): v for k, v in value.items()})
                break
    return found


def parse_score(text: str, dimension: str | None = None) -> int:
    """The 1-5 integer in a judge reply; ``ValueError`` saying what is wrong otherwise."""
    value: Any = None
    keys = ["score", *([dimension, DIMENSION_NAMES[dimension]] if dimension in DIMENSION_NAMES else [])]
    for obj in _objects(text):
        value = next((obj[k] for k in keys if k in obj), None)
        if value is not None:
            break
    if value is None:
        match = _SCORE_TEXT.search(text) or _BARE_NUMBER.match(text)
        if match is None:
            raise ValueError(f"no score found in {_quote(text)}")
        value = match.group(1)
    try:
        if isinstance(value, bool):
            raise TypeError(value)
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"the score {value!r} is not a number") from None
    if not number.is_integer():
        raise ValueError(f"the score {value!r} is not an integer")
    low, high = SCORE_RANGE
    if not low <= number <= high:
        raise ValueError(f"the score {int(number)} is outside {low}..{high}")
    return int(number)


def parse_verdict(text: str) -> str:
    """``"fully"``, ``"partially"`` or ``"not"`` from a judge reply; ``ValueError`` otherwise."""
    value: Any = None
    for obj in _objects(text):
        value = obj.get("verdict", obj.get("consistency"))
        if value is not None:
            break
    if value is None:
        match = _VERDICT_TEXT.search(text) or _BARE_VERDICT.match(text)
        if match is None:
            raise ValueError(f"no verdict found in {_quote(text)}")
        value = match.group(1)
    word = str(value).strip().lower().removesuffix(" consistent").replace("_", " ")
    word = {"inconsistent": "not", "not consistent": "not", "consistent": "fully", "none": "not"}.get(word, word)
    if word not in VERDICTS:
        raise ValueError(f"the verdict {value!r} is not one of fully, partially, not")
    return word


def _quote(text: str, limit: int = 200) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


# -- the judge -------------------------------------------------------------------------------------------------


class Judge:
    """Scores predictions with any chat backend (see the module docstring for requests, parsing and failures).

    ``optional=True`` turns failures into missing (``None``) scores with the reason instead of ``JudgeError``.
    """

    def __init__(self, backend: GeneratingBackend, *, optional: bool = False, max_new_tokens: int = 256) -> None:
        self.backend = backend
        self.optional = optional
        self.max_new_tokens = int(max_new_tokens)
        self.unavailable: str | None = None  # set after a backend failure in optional mode

    def identity(self) -> dict[str, str]:
        """The backend's identity plus the prompt version, for result files."""
        ident = getattr(self.backend, "identity", None)
        base = dict(ident()) if callable(ident) else {"backend": type(self.backend).__name__}
        return {**base, "judge_prompt_version": JUDGE_PROMPT_VERSION}

    def _who(self) -> str:
        ident = self.identity()
        model, url = ident.get("model"), ident.get("base_url")
        if model and url:
            return f"the judge {model!r} at {url}"
        if model:
            return f"the judge {model!r} ({ident.get('backend', 'backend')})"
        return f"the judge backend {ident.get('backend', type(self.backend).__name__)}"

    def _backend_failure(self, err: Exception) -> JudgeError:
        who = self._who()
        return JudgeError(
            f"{who} failed: {err}. Fix the judge endpoint (is the server running and serving that model, is its "
            f"API key set?) or pass {OPTIONAL_FLAG} to record the judge scores as missing instead"
        )

    def _ask(self, messages: list[Message], parse: Any, retry_file: str, retry_macro: str) -> tuple[Any, list[str]]:
        """Send ``messages``; on an unusable reply send one corrective follow-up. Returns (parsed, replies)."""
        replies: list[str] = []
        conversation = list(messages)
        problem = ""
        for attempt in range(2):
            try:
                reply = self.backend.generate(conversation, stop=[], max_new_tokens=self.max_new_tokens)
            except Exception as err:  # BackendError, a local model's own errors: the judge did not judge
                raise self._backend_failure(err) from err
            replies.append(reply)
            try:
                return parse(reply), replies
            except ValueError as err:
                problem = str(err)
            if attempt == 0:
                conversation = [
                    *conversation,
                    {"role": "assistant", "content": [text_part(reply)]},
                    {"role": "user", "content": [text_part(_render(retry_file, retry_macro, problem))]},
                ]
        raise _Unreadable(f"{self._who()} answered outside the format twice ({problem}). Use a stronger judge "
                          f"model, or pass {OPTIONAL_FLAG} to record such scores as missing", replies)

    def score(self, question: str, reference: str, prediction: str) -> JudgeScores:
        """CI, DO, CU and TU (1-5) of ``prediction`` against ``reference`` for ``question``: four requests."""
        if self.unavailable is not None:
            return JudgeScores(None, None, None, None, error=self.unavailable)
        scores: dict[str, int | None] = {}
        raw: dict[str, tuple[str, ...]] = {}
        errors: list[str] = []
        file = f"judge_v{JUDGE_PROMPT_VERSION}.jinja"
        for dim in DIMENSIONS:
            messages = score_messages(dim, question, reference, prediction)
            try:
                value, replies = self._ask(messages, lambda text, d=dim: parse_score(text, d), file, "score_retry")
            except _Unreadable as err:
                if not self.optional:
                    raise JudgeError(f"{dim.upper()}: {err}") from None
                scores[dim], raw[dim] = None, tuple(err.replies)
                errors.append(f"{dim.upper()}: {err}")
                continue
            except JudgeError as err:
                if not self.optional:
                    raise
                self.unavailable = str(err)
                return JudgeScores(None, None, None, None, raw=raw, error=self.unavailable)
            scores[dim], raw[dim] = value, tuple(replies)
        return JudgeScores(scores["ci"], scores["do"], scores["cu"], scores["tu"], raw=raw,
                           error="; ".join(errors) or None)

    def answer(self, question: str, reference: str, prediction: str) -> AnswerVerdict:
        """Whether ``prediction`` is fully / partially / not consistent with ``reference``: one request."""
        if self.unavailable is not None:
            return AnswerVerdict(None, None, error=self.unavailable)
        file = f"answer_v{JUDGE_PROMPT_VERSION}.jinja"
        try:
            verdict, replies = self._ask(answer_messages(question, reference, prediction), parse_verdict, file,
                                         "answer_retry")
        except _Unreadable as err:
            if not self.optional:
                raise JudgeError(str(err)) from None
            return AnswerVerdict(None, None, raw=tuple(err.replies), error=str(err))
        except JudgeError as err:
            if not self.optional:
                raise
            self.unavailable = str(err)
            return AnswerVerdict(None, None, error=self.unavailable)
        return AnswerVerdict(VERDICTS[verdict], verdict, raw=tuple(replies))

    def judge_answer(self, question: str, reference: str, prediction: str) -> float | None:
        """R_acc's score in {0, 0.5, 1}; ``None`` only with ``optional=True`` when the judge failed."""
        return self.answer(question, reference, prediction).score


class _Unreadable(JudgeError):
    """Two replies in a row outside the format (carries the replies for the record)."""

    def __init__(self, message: str, replies: Sequence[str]) -> None:
        super().__init__(message)
        self.replies = list(replies)


__all__ = [
    "DIMENSIONS",
    "DIMENSION_NAMES",
    "JUDGE_PROMPT_VERSION",
    "AnswerVerdict",
    "Judge",
    "JudgeError",
    "JudgeScores",
    "answer_messages",
    "parse_score",
    "parse_verdict",
    "score_messages",
]
