"""The protocol grammar (constrained decoding): what the teacher writes matches it, broken turns do not, and the
shipped model driven through it never breaks the format."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

pytest.importorskip("llguidance")
pytest.importorskip("transformers")

import llguidance
import llguidance.hf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from medscope.agent.grammar import (
    TOOL_NAMES,
    TurnFormat,
    longest_ending,
    number_fits,
    time_slot,
    turn_grammar,
)
from medscope.agent.protocol import (
    FinalAnswer,
    ToolCall,
    parse_answer_windows,
    parse_turn,
    render_answer,
    render_tool_call,
    render_windows,
)

CORPUS = ["<think>No frame shows it yet.</think>", '{"name": "crop_video", "arguments": {"start_time": 1.5}}',
          "<answer>[12.5, 14.0]</answer> the gauze phase", "0123456789 [], .:"] * 20


@cache
def _tokenizer(tags_as_tokens: bool) -> PreTrainedTokenizerFast:
    """A byte-level BPE like the tiny model's; with the protocol tags as added tokens (as the tiny and Qwen3 models
    hold them) or without (tags spelled in text pieces)."""
    from medscope.train.tiny import PROTOCOL_TOKENS, build_tokenizer, load_chat_template

    if tags_as_tokens:
        return build_tokenizer(CORPUS, vocab_size=400, chat_template=load_chat_template("qwen3_vl"))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|im_end|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>")
    assert not set(PROTOCOL_TOKENS) & set(tokenizer.get_added_vocab())
    return tokenizer


def _accepts(tokenizer: PreTrainedTokenizerFast, turn: TurnFormat, text: str) -> bool:
    added = tokenizer.get_added_vocab()
    grammar = llguidance.LLMatcher.grammar_from_lark(turn_grammar(turn, lambda tag: tag in added))
    matcher = llguidance.LLMatcher(llguidance.hf.from_tokenizer(tokenizer), grammar, log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    ids = tokenizer(text, add_special_tokens=False).input_ids
    return matcher.consume_tokens(ids) and matcher.is_accepting()


TOOLS = TurnFormat(tools=TOOL_NAMES, windows=True)
CLOSED = TurnFormat(tools=TOOL_NAMES, windows=True, closed_reasoning=True)  # GA-GRPO's rollouts
TEACHER_TURNS = [  # (format, a turn as the teacher renders it)
    (TOOLS, render_tool_call("crop_video", {"start_time": 17.0, "end_time": 73.5}, "No frame shows it yet.")),
    (TOOLS, render_tool_call("get_frame", {"timestamp": 120.5}, "Look at the time asked.")),
    (TOOLS, render_answer(render_windows([(56.0, 60.5)]), "Some frames show it.")),
    (TurnFormat(windows=True), render_answer(render_windows([(1.0, 2.5), (30.0, 41.5)]), "Two places.")),
    (TurnFormat(tools=TOOL_NAMES), render_answer("upper left", "One frame shows it.")),
    (TurnFormat(explicit_evidence=True), render_answer("B", "It falls there.", [(3.0, 9.5)])),
    # </think> left out, as the parser allows: a model that wants <tool_call> next is not pushed into writing the
    # call inside its reasoning (what the shipped model did when the grammar required </think>)
    (TOOLS, '<think>Look closer.<tool_call>{"name": "get_frame", "arguments": {"timestamp": 1.5}}</tool_call>'),
    (CLOSED, render_tool_call("crop_video", {"start_time": 0.0, "end_time": 73.5}, "No frame shows it yet.")),
]


@pytest.mark.parametrize("tags_as_tokens", [True, False], ids=["tag-tokens", "tag-text"])
@pytest.mark.parametrize(("turn", "text"), TEACHER_TURNS)
def test_teacher_turns_match_the_grammar(tags_as_tokens: bool, turn: TurnFormat, text: str) -> None:
    assert _accepts(_tokenizer(tags_as_tokens), turn, text)


BROKEN = [  # (format, a turn the grammar must not let through, why)
    (TOOLS, "<think>One frame shows it.0, 62.0]</answer>", "</think> skipped: the untrained baseline's slip"),
    (TOOLS, '<think>x</think><tool_call>{"name": "crop_video", "arguments": {"start_time": 1.0}}</tool_call>',
     "an argument missing"),
    (TOOLS, '<think>x</think><tool_call>{"name": "zoom", "arguments": {"t": 1.0}}</tool_call>', "an unknown tool"),
    (TurnFormat(windows=True), '<think>x</think><tool_call>{"name": "get_frame", "arguments": {"timestamp": 1.0}}'
                               "</tool_call>", "a tool call where only an answer may come"),
    (TOOLS, "<think>x</think><answer>[5, 6.0]</answer>", "a time not in the protocol's number format"),
    (TOOLS, "<think>x</think><answer>around a minute</answer>", "words where a window is asked"),
    (TurnFormat(explicit_evidence=True), "<think>x</think><answer>B</answer>", "the evidence asked for left out"),
    (TOOLS, '<think>x</think><tool_call>{"name": "get_frame", "arguments": {"timestamp": 03.8}}</tool_call>',
     "a leading zero, which JSON rejects"),
    (CLOSED, '<think>Look closer.<tool_call>{"name": "get_frame", "arguments": {"timestamp": 1.5}}</tool_call>',
     "an open reasoning where the turn must close it (TRL's parser would read the call as reasoning)"),
    (CLOSED, "<think></think><answer>[1.0, 2.0]</answer>", "an empty reasoning where one must be written"),
]


@pytest.mark.parametrize(("turn", "text", "why"), BROKEN, ids=[why for _, _, why in BROKEN])
def test_grammar_rejects_broken_turns(turn: TurnFormat, text: str, why: str) -> None:
    assert not _accepts(_tokenizer(True), turn, text)


def test_unknown_tool_in_a_format_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no tool named zoom; the tools are crop_video, get_frame"):
        turn_grammar(TurnFormat(tools=("zoom",)))


BOUNDED = TurnFormat(tools=TOOL_NAMES, windows=True, duration=180.0)
CALL = '<think>x</think><tool_call>{"name": "crop_video", "arguments": {"start_time": '
SLOTS = [  # (the turn so far, what it has of the time being written and its bounds in tenths, or None)
    ("<think>x</think><answer>[144.5, 1", ("1", 1445, 1800)),  # a window's end: after its start, in the video
    ("<think>x</think><answer>[14", ("14", -1, 1799)),  # a start leaves room for its end
    ("<think>x</think><answer>[[1.0, 2.5], [30.0, 4", ("4", 300, 1800)),  # the second of two windows
    ("<think>x</think><answer>[[1.0, 2.5], ", None),  # between windows: not inside a time
    (CALL + '17.5, "end_time": ', ("", 175, 1800)),
    (CALL + "17", ("17", -1, 1799)),
    ('<think>x</think><tool_call>{"name": "get_frame", "arguments": {"timestamp": 9', ("9", -1, 1800)),
    ("<think>Bleeding near [12.0, 1", None),  # reasoning is free text
    ("<think>x</think><answer>[12.0, 1", ("1", 120, 1800)),
]


@pytest.mark.parametrize(("text", "slot"), SLOTS)
def test_time_slot_finds_the_time_being_written_and_its_bounds(text: str, slot: tuple[str, int, int] | None) -> None:
    assert time_slot(BOUNDED, text) == slot


def test_time_slot_of_a_text_answer_and_of_an_unknown_duration() -> None:
    assert time_slot(TurnFormat(tools=TOOL_NAMES, duration=180.0), "<think>x</think><answer>[14") is None
    written, low, high = time_slot(TurnFormat(windows=True), "<think>x</think><answer>[5.0, 1") or ("", 0, 0)
    assert (written, low) == ("1", 50) and high > 10**12


# (written so far, fits after 144.5 and within 180 s): the shipped model's slips were copies like 144.5 -> 14.5;
# "0" can only be 0.x (no leading zeros)
FITS = [("", True), ("1", True), ("14", True), ("14.", False), ("15", True), ("15.", False), ("19", False),
        ("144.", True), ("144.5", False), ("144.6", True), ("144.6]", True), ("145.0}}", True), ("180.0", True),
        ("180.1", False), ("18", True), ("180", True), ("181", False), ("2", False), ("0", False), ("05", False)]


@pytest.mark.parametrize(("written", "fits"), FITS)
def test_number_fits_after_the_start_and_inside_the_video(written: str, fits: bool) -> None:
    assert number_fits(written, 1445, 1800) is fits


def test_a_zero_starts_only_a_time_below_one_second() -> None:
    assert number_fits("0", -1, 1799) and number_fits("0.", -1, 1799) and number_fits("0.4", 3, 1799)
    assert not number_fits("0", 9, 1799)  # 0.0 ... 0.9 all end before 0.9


def test_processor_keeps_a_window_end_after_its_start() -> None:
    """After ``[144.5, 14`` on a 180 s video only 4..9 may follow (144.6 to 149.9): not the point (14.x) nor 0..3."""
    import torch

    from medscope.agent.backends.hf import GrammarProcessor

    tokenizer = _tokenizer(True)
    added = tokenizer.get_added_vocab()
    grammar = llguidance.LLMatcher.grammar_from_lark(turn_grammar(BOUNDED, lambda tag: tag in added))
    matcher = llguidance.LLMatcher(llguidance.hf.from_tokenizer(tokenizer), grammar)
    processor = GrammarProcessor(matcher, 0, BOUNDED, lambda i: tokenizer.decode([i]))
    ids = tokenizer("<think>x</think><answer>[144.5, 14", add_special_tokens=False).input_ids
    scores = processor(torch.tensor([ids]), torch.zeros(1, len(tokenizer)))
    allowed = {tokenizer.decode([i]) for i in torch.isfinite(scores[0]).nonzero().flatten().tolist()}
    assert allowed == {"4", "5", "6", "7", "8", "9"}


def test_longest_ending_is_the_longest_call_or_answer_the_turn_may_need() -> None:
    assert longest_ending(TOOLS) == ('</think>\n<tool_call>{"name": "crop_video", "arguments": {"start_time": 9999.9, '
                                     '"end_time": 9999.9}}</tool_call>')
    forced = longest_ending(TurnFormat(windows=True, explicit_evidence=True))
    assert forced == "</think>\n<answer>[9999.9, 9999.9]</answer>\n<evidence>[[9999.9, 9999.9]]</evidence>"
    for turn in (TOOLS, TurnFormat(windows=True, explicit_evidence=True)):  # what it measures is a turn's ending
        assert _accepts(_tokenizer(True), turn, "<think>x" + longest_ending(turn))


@pytest.mark.parametrize("tags_as_tokens", [True, False], ids=["tag-tokens", "tag-text"])
def test_processor_closes_a_reasoning_that_would_run_past_the_budget(tags_as_tokens: bool) -> None:
    """From the close_by-th new token on, only pieces that open the next tag may follow the reasoning; before it,
    the reasoning goes on freely."""
    import torch

    from medscope.agent.backends.hf import GrammarProcessor

    tokenizer = _tokenizer(tags_as_tokens)
    added = tokenizer.get_added_vocab()
    grammar = llguidance.LLMatcher.grammar_from_lark(turn_grammar(TOOLS, lambda tag: tag in added))
    ids = tokenizer("<think>No frame shows", add_special_tokens=False).input_ids

    def allowed(close_by: int) -> set[str]:
        matcher = llguidance.LLMatcher(llguidance.hf.from_tokenizer(tokenizer), grammar)
        processor = GrammarProcessor(matcher, 0, TOOLS, lambda i: tokenizer.decode([i]), close_by=close_by)
        scores = processor(torch.tensor([ids]), torch.zeros(1, len(tokenizer)))
        return {tokenizer.decode([i]) for i in torch.isfinite(scores[0]).nonzero().flatten().tolist()}

    closing = allowed(len(ids))
    assert closing and all("<" in piece for piece in closing), closing
    if tags_as_tokens:
        assert closing == {"</think>", "<tool_call>", "<answer>"}
    assert any("<" not in piece for piece in allowed(len(ids) + 1))


def test_shipped_model_through_the_grammar_never_breaks_the_format(synth_path: Path, one_torch_thread: None) -> None:
    """The built-in model on a SynthClin video: with the grammar every turn is a tool call or an answer, every
    "when" answer is a window and every range is in order; the same model without it broke the format in 134 of 202
    held-out episodes."""
    from medscope.agent.backends.hf import HFBackend
    from medscope.agent.loop import AgentConfig, run_episode
    from medscope.models import builtin_model_path

    backend = HFBackend.from_pretrained(builtin_model_path(), threads=1)
    questions = [("When does bleeding happen? Answer with the time window(s) in seconds.", "grounding"),
                 ("When does smoke happen? Answer with the time window(s) in seconds.", "grounding"),
                 ("Where in the field does the gauze appear?", "grounded_vqa")]
    # 48 tokens leave the reasoning about 17 before it must close: every turn still ends with a call or an answer
    for (question, task), budget in zip(questions, (96, 48, 96), strict=True):
        episode = run_episode(backend, synth_path, question, AgentConfig(max_new_tokens=budget), task=task)
        kinds = [turn.kind for turn in episode.turns]
        assert "format_error" not in kinds, [turn.raw for turn in episode.turns]
        for turn in episode.turns:
            parsed = parse_turn(turn.raw)
            assert isinstance(parsed, ToolCall | FinalAnswer)
        assert episode.answer is not None
        # Every range ends after it starts, inside the video (the bounds beside the grammar): no crop is refused for
        # its range, no window is empty
        assert not [turn.error for turn in episode.turns if turn.error], [turn.raw for turn in episode.turns]
        if task == "grounding":
            windows = parse_answer_windows(episode.answer)
            assert windows and all(0 <= s < e <= episode.duration for s, e in windows), episode.answer


def test_processor_masks_what_the_grammar_forbids_and_a_padded_vocabulary() -> None:
    """Qwen's embeddings are padded past the tokenizer: those ids are never allowed. At the start of a turn only
    ``<think>`` is; after it, every token the reasoning may hold, but no tag other than the ones that may follow."""
    import torch

    from medscope.agent.backends.hf import GrammarProcessor

    tokenizer = _tokenizer(True)
    added = tokenizer.get_added_vocab()
    grammar = llguidance.LLMatcher.grammar_from_lark(turn_grammar(TOOLS, lambda tag: tag in added))
    processor = GrammarProcessor(llguidance.LLMatcher(llguidance.hf.from_tokenizer(tokenizer), grammar), 3)
    vocab = len(tokenizer) + 5
    prompt = torch.tensor([[0, 1, 2]])
    scores = processor(prompt, torch.zeros(1, vocab))
    assert torch.isfinite(scores[0]).nonzero().flatten().tolist() == [added["<think>"]]
    reasoning = processor(torch.cat([prompt, torch.tensor([[added["<think>"]]])], dim=1), torch.zeros(1, vocab))
    allowed = set(torch.isfinite(reasoning[0]).nonzero().flatten().tolist())
    assert {added["</think>"], added["<tool_call>"], added["<answer>"]} <= allowed
    assert not {added["</answer>"], added["<think>"], tokenizer.eos_token_id} & allowed
    assert not allowed & set(range(len(tokenizer), vocab))
    with pytest.raises(ValueError, match="one sequence"):
        processor(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, vocab))
