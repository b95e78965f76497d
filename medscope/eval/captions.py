"""Caption metrics through pycocoevalcap: BLEU-4, CIDEr, METEOR, ROUGE-L, scaled x100 like the paper's tables.

``caption_scores(predictions, references)`` takes ``{sample_id: prediction}`` and ``{sample_id: [reference, ...]}``
(the same ids on both sides) and scores them the way the COCO caption evaluation does:

1. **Tokenisation.** With ``tokenizer="auto"`` (the default) every caption goes through pycocoevalcap's
   ``PTBTokenizer`` (Stanford CoreNLP's PTB tokenizer, lower-cased, punctuation tokens removed), which needs Java.
   When ``java`` is not on ``PATH`` or the tokenizer fails, the **simple** tokenisation is used instead: lower
   case, every ASCII punctuation character replaced by a space, whitespace collapsed (so "upper-left" becomes
   "upper left", where PTB would keep "upper-left"). Numbers from the two tokenisations are close but not
   identical; the result records which one ran (``result.tokenizer``: ``"ptb"`` or ``"simple"``) and why it fell
   back. ``tokenizer="ptb"`` makes a PTB failure an error, ``tokenizer="simple"`` never starts Java for it.
2. **Empty captions.** Some pycocoevalcap scorers assert on or choke on empty strings (METEOR's Java protocol
   misreads them), so a prediction that is empty after tokenisation (``""``, whitespace, punctuation only) is
   replaced by the placeholder token ``emptyprediction`` and an empty reference by ``emptyreference``: a token no
   real caption contains, so an empty prediction scores (close to) 0 rather than crashing. ``"|||"`` (METEOR's
   field separator) is removed from every caption.
3. **Scorers.** ``Bleu(4)`` (BLEU-4 is its fourth value, corpus-level with the "closest" reference length),
   ``Cider()`` (CIDEr-D's corpus IDF: with a single sample every n-gram has IDF 0, so CIDEr is 0),
   ``Meteor()`` (the METEOR 1.5 jar, corpus-level) and ``Rouge()`` (ROUGE-L, beta 1.2, mean over samples).

METEOR needs Java. When ``java`` is missing, or the jar fails (crashes, dies, does not answer within
``meteor_timeout`` seconds), ``meteor`` is ``None`` -- never 0 -- and ``result.unavailable["meteor"]`` says why
(``METEOR needs Java: apt-get install default-jre-headless``); a ``RuntimeWarning`` says the same. The METEOR
process (whose first request loads a paraphrase table: a few seconds) is kept for later calls in the same
process and closed at exit or by ``close_meteor()``.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import string
import threading
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, TypeVar

CAPTION_METRICS = ("bleu4", "cider", "meteor", "rouge_l")
JAVA_HINT = "METEOR needs Java: apt-get install default-jre-headless"
EMPTY_PREDICTION = "emptyprediction"
EMPTY_REFERENCE = "emptyreference"
TOKENIZERS = ("auto", "ptb", "simple")
DEFAULT_METEOR_TIMEOUT_S = 600.0

K = TypeVar("K", bound=Hashable)

_PUNCTUATION_TO_SPACE = str.maketrans({ch: " " for ch in string.punctuation})


class CaptionScores(dict[str, float | None]):
    """``{"bleu4", "cider", "meteor", "rouge_l"} -> score x100 or None`` plus how they were computed.

    ``tokenizer`` is ``"ptb"`` or ``"simple"``; ``notes`` explains a tokenizer fallback and the placeholders
    used; ``unavailable`` maps each metric that is ``None`` to the reason; ``n`` is the number of samples.
    ``to_json()`` gives all of it as one JSON-ready dict.
    """

    def __init__(
        self,
        scores: Mapping[str, float | None],
        *,
        tokenizer: str,
        n: int,
        unavailable: Mapping[str, str] | None = None,
        notes: Sequence[str] = (),
    ) -> None:
        super().__init__(scores)
        self.tokenizer = tokenizer
        self.n = n
        self.unavailable = dict(unavailable or {})
        self.notes = list(notes)

    def to_json(self) -> dict[str, Any]:
        return {**self, "tokenizer": self.tokenizer, "n": self.n, "unavailable": self.unavailable,
                "notes": self.notes}

    def __repr__(self) -> str:
        meta = f"tokenizer={self.tokenizer!r}, n={self.n}, unavailable={self.unavailable!r}"
        return f"CaptionScores({dict(self)!r}, {meta})"


# -- tokenisation ----------------------------------------------------------------------------------------------


def simple_tokenize(text: str) -> str:
    """Lower case, ASCII punctuation to spaces, single spaces: the fallback when the PTB tokenizer cannot run."""
    return " ".join(text.lower().translate(_PUNCTUATION_TO_SPACE).split())


def _one_line(text: str) -> str:
    # Every kind of line break (and other whitespace) becomes one space: the PTB tokenizer reads one caption a line.
    return " ".join(text.split())


def ptb_tokenize(captions: Mapping[K, Sequence[str]]) -> dict[K, list[str]]:
    """pycocoevalcap's ``PTBTokenizer`` on ``{key: [caption, ...]}``, checked: raises ``RuntimeError`` when Java
    is missing or the tokenizer returns a different number of lines than it was given."""
    if shutil.which("java") is None:
        raise RuntimeError("no `java` on PATH")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    # Whitespace-only captions would be empty lines, which the tokenizer may drop at the end of its input.
    given = {key: [{"caption": _one_line(c) or "."} for c in caps] for key, caps in captions.items()}
    try:
        out = PTBTokenizer().tokenize(given)
    except Exception as err:  # OSError starting java, decoding errors, ...
        raise RuntimeError(f"PTBTokenizer failed: {type(err).__name__}: {err}") from err
    if set(out) != set(given) or any(len(out[key]) != len(given[key]) for key in given):
        raise RuntimeError("PTBTokenizer returned a different number of captions than it was given (did java fail?)")
    return {key: list(out[key]) for key in given}


def _tokenize(captions: dict[K, list[str]], tokenizer: str) -> tuple[dict[K, list[str]], str, str | None]:
    """Tokenised captions, the tokenizer that ran and, for a fallback, why."""
    if tokenizer in ("auto", "ptb"):
        try:
            return ptb_tokenize(captions), "ptb", None
        except RuntimeError as err:
            if tokenizer == "ptb":
                raise RuntimeError(f"tokenizer='ptb' could not run: {err}") from err
            return ({key: [simple_tokenize(c) for c in caps] for key, caps in captions.items()}, "simple",
                    f"PTB tokenizer unavailable ({err}); used the simple tokenisation (lower case, punctuation "
                    "stripped): scores are not strictly comparable with PTB-tokenised ones")
    return {key: [simple_tokenize(c) for c in caps] for key, caps in captions.items()}, "simple", None


def _clean(text: str, placeholder: str) -> str:
    return " ".join(text.replace("|||", " ").split()) or placeholder


# -- METEOR ----------------------------------------------------------------------------------------------------

_meteor_lock = threading.Lock()  # one caller at a time uses (or replaces) the shared METEOR process
_meteor_scorer: Any = None


def _stop_meteor(scorer: Any) -> None:
    proc = scorer.meteor_p
    if scorer.lock.locked():  # pycocoevalcap leaves its lock held when a request fails; its __del__ would hang
        scorer.lock.release()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        try:
            if stream is not None:
                stream.close()
        except OSError:  # already closed or broken: nothing to flush
            pass
    proc.kill()
    proc.wait()


def close_meteor() -> None:
    """Stop the shared METEOR Java process, if one is running."""
    global _meteor_scorer
    with _meteor_lock:
        if _meteor_scorer is not None:
            _stop_meteor(_meteor_scorer)
            _meteor_scorer = None


atexit.register(close_meteor)


def meteor_score(
    gts: dict[Any, list[str]], res: dict[Any, list[str]], *, timeout: float = DEFAULT_METEOR_TIMEOUT_S
) -> tuple[float | None, str | None]:
    """pycocoevalcap's corpus METEOR (0-1) on tokenised captions, or ``(None, reason)`` when Java cannot run it."""
    global _meteor_scorer
    if shutil.which("java") is None:
        return None, f"{JAVA_HINT} (no `java` on PATH)"
    from pycocoevalcap.meteor.meteor import Meteor

    with _meteor_lock:
        scorer = _meteor_scorer
        if scorer is not None and scorer.meteor_p.poll() is not None:  # died since the last call
            _stop_meteor(scorer)
            scorer = _meteor_scorer = None
        if scorer is None:
            try:
                scorer = Meteor()
            except OSError as err:
                return None, f"{JAVA_HINT} (starting java failed: {err})"
        fired = threading.Event()

        def _expire() -> None:  # a hung jar: killing it ends the pending read with EOF
            fired.set()
            scorer.meteor_p.kill()

        watchdog = threading.Timer(timeout, _expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            score, _ = scorer.compute_score(gts, res)
            value = float(score)
        except Exception as err:
            proc = scorer.meteor_p
            proc.kill()
            proc.wait()
            stderr = ""
            with contextlib.suppress(OSError, ValueError, AttributeError):
                stderr = (proc.stderr.read() or b"").decode(errors="replace").strip()[-300:]
            _stop_meteor(scorer)
            _meteor_scorer = None
            why = (f"did not answer within {timeout:g} s" if fired.is_set()
                   else f"failed ({type(err).__name__}: {err}; exit code {proc.returncode})")
            detail = f"; java said: {stderr}" if stderr else ""
            return None, f"the METEOR jar {why}{detail}. {JAVA_HINT} (a working JRE 8+ with 2 GB of heap)"
        finally:
            watchdog.cancel()
        _meteor_scorer = scorer
        return value, None


# -- the metrics -----------------------------------------------------------------------------------------------


def caption_scores(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    *,
    tokenizer: str = "auto",
    meteor: bool = True,
    meteor_timeout: float = DEFAULT_METEOR_TIMEOUT_S,
) -> CaptionScores:
    """BLEU-4, CIDEr, METEOR and ROUGE-L (x100) of ``predictions`` against ``references`` (see the module
    docstring for the tokenisation, the empty-caption placeholders and when METEOR is ``None``).

    ``meteor=False`` skips METEOR (``None``, reason "not requested"). Raises ``ValueError`` when the two sides do
    not have the same ids, a sample has no reference, or there is nothing to score.
    """
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, not {tokenizer!r}")
    ids = list(predictions)
    if not ids:
        raise ValueError("no predictions to score")
    missing_refs = [k for k in ids if k not in references]
    missing_preds = [k for k in references if k not in predictions]
    if missing_refs or missing_preds:
        raise ValueError(
            f"predictions and references must have the same ids: {len(missing_refs)} prediction(s) without "
            f"references (e.g. {missing_refs[:3]}), {len(missing_preds)} reference(s) without a prediction "
            f"(e.g. {missing_preds[:3]})"
        )
    for k in ids:
        if isinstance(references[k], str) or not references[k]:
            raise ValueError(f"references[{k!r}] must be a non-empty list of strings")

    captions: dict[tuple[str, str], list[str]] = {}
    for k in ids:
        captions[("ref", k)] = [str(r) for r in references[k]]
        captions[("pred", k)] = [str(predictions[k])]
    tokens, used, fallback = _tokenize(captions, tokenizer)
    gts = {k: [_clean(r, EMPTY_REFERENCE) for r in tokens[("ref", k)]] for k in ids}
    res = {k: [_clean(tokens[("pred", k)][0], EMPTY_PREDICTION)] for k in ids}

    notes = [fallback] if fallback else []
    empty = sum(r[0] == EMPTY_PREDICTION for r in res.values())
    if empty:
        notes.append(f"{empty} empty prediction(s) scored as the placeholder {EMPTY_PREDICTION!r}")

    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)
    unavailable: dict[str, str] = {}
    meteor_value: float | None = None
    if meteor:
        meteor_value, why = meteor_score(gts, res, timeout=meteor_timeout)
        if why is not None:
            unavailable["meteor"] = why
            warnings.warn(f"METEOR is missing from the caption scores: {why}", RuntimeWarning, stacklevel=2)
    else:
        unavailable["meteor"] = "not requested (meteor=False)"

    scores = {
        "bleu4": 100.0 * float(bleu[3]),
        "cider": 100.0 * float(cider),
        "meteor": None if meteor_value is None else 100.0 * meteor_value,
        "rouge_l": 100.0 * float(rouge),
    }
    return CaptionScores(scores, tokenizer=used, n=len(ids), unavailable=unavailable, notes=notes)


__all__ = [
    "CAPTION_METRICS",
    "EMPTY_PREDICTION",
    "EMPTY_REFERENCE",
    "JAVA_HINT",
    "CaptionScores",
    "caption_scores",
    "close_meteor",
    "meteor_score",
    "ptb_tokenize",
    "simple_tokenize",
]
