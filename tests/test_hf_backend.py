"""HFBackend over tiny, randomly initialised Qwen3-VL and Qwen2.5-VL models built offline by medscope.train.tiny."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from transformers import AutoConfig, AutoTokenizer, GenerationConfig  # noqa: E402

from medscope.agent.backends.base import Backend, image_part, text_part, truncate_at_stop  # noqa: E402
from medscope.agent.backends.hf import HFBackend  # noqa: E402
from medscope.train import tiny  # noqa: E402

ARCHS = ["qwen3_vl", "qwen2_5_vl"]
TEXTS = [
    "<think>The bleeding starts near 87 s; look closer.</think>",
    '<tool_call>{"name": "crop_video", "arguments": {"start_time": 80.0, "end_time": 95.5}}</tool_call>',
    '<tool_call>{"name": "get_frame", "arguments": {"timestamp": 87.5}}</tool_call>',
    "<answer>A clip is placed on the cystic duct.</answer><evidence>[[124.0, 132.0]]</evidence>",
    "[87.5s] [88.0s] Frames of the video with their timestamps. What happens in the video?",
] * 20
TAGGED = '<think>a</think><tool_call>{"name": "get_frame"}</tool_call>'


def _image(w: int, h: int, shade: int) -> Image.Image:
    return Image.new("RGB", (w, h), (shade, 255 - shade, (3 * shade) % 256))


def _conversation() -> list[dict[str, Any]]:
    """System text, a user turn with 2 images, an assistant tool call, and a tool result with 3 images."""
    return [
        {"role": "system", "content": [text_part("You are a clinical video assistant.")]},
        {
            "role": "user",
            "content": [
                text_part("[0.0s]"),
                image_part(_image(64, 48, 10)),
                text_part("[60.0s]"),
                image_part(_image(128, 96, 90)),
                text_part("What happens?"),
            ],
        },
        {"role": "assistant", "content": [text_part(TEXTS[1])]},
        {
            "role": "tool",
            "content": [
                text_part("[80.0s]"),
                image_part(_image(96, 64, 150)),
                text_part("[87.5s]"),
                image_part(_image(64, 64, 200)),
                text_part("[95.0s]"),
                image_part(_image(80, 48, 240)),
            ],
        },
    ]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for arch in ARCHS:
        tokenizer = tiny.build_tokenizer(TEXTS, vocab_size=400, chat_template=tiny.load_chat_template(arch))
        model = tiny.build_tiny_model(arch, tokenizer)
        out[arch] = tiny.save_tiny(model, tiny.build_processor(arch, tokenizer), tmp_path_factory.mktemp(arch))
    return out


@pytest.fixture(scope="module")
def backends(saved: dict[str, Path]) -> dict[str, HFBackend]:
    return {arch: HFBackend.from_pretrained(path, name=f"tiny-{arch}") for arch, path in saved.items()}


@pytest.mark.parametrize("arch", ARCHS)
def test_images_reach_pixel_values(backends: dict[str, HFBackend], arch: str) -> None:
    backend = backends[arch]
    assert isinstance(backend, Backend)
    assert backend.identity() == {"backend": "hf", "model": f"tiny-{arch}"}
    text = backend.generate(_conversation(), stop=["</tool_call>", "</answer>"], max_new_tokens=8)
    assert isinstance(text, str)
    stats = backend.last_prompt_stats
    assert stats["images"] == 5
    assert stats["grid_rows"] == 5
    assert stats["image_token_count"] == stats["expected_image_tokens"] > 0
    assert stats["prompt_tokens"] > stats["image_token_count"]
    assert 0 < stats["new_tokens"] <= 8


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_model_config_agrees_with_its_tokenizer(saved: dict[str, Path], arch: str) -> None:
    """The config's stop token is the tokenizer's eos and generate()'s, so a Trainer has nothing to realign."""
    config = AutoConfig.from_pretrained(saved[arch]).get_text_config()
    eos = AutoTokenizer.from_pretrained(saved[arch]).eos_token_id
    assert eos is not None and config.eos_token_id == eos
    assert GenerationConfig.from_pretrained(saved[arch]).eos_token_id == eos


def test_tool_image_rendering_per_template(backends: dict[str, HFBackend]) -> None:
    # Qwen3-VL's template shows tool images inside <tool_response> of a user turn: sent as they are.
    assert backends["qwen3_vl"].tool_images_native
    # Qwen2.5-VL's template has no tool handling (it writes a "<|im_start|>tool" turn): rewritten as a user turn.
    assert not backends["qwen2_5_vl"].tool_images_native
    raw = backends["qwen2_5_vl"]._render(_conversation())
    assert "<|im_start|>tool\n" in raw
    for backend in backends.values():
        backend.generate(_conversation(), stop=[], max_new_tokens=1)
        prompt = backend.last_prompt
        assert "<|im_start|>tool" not in prompt
        response = prompt[prompt.index("<tool_response>") : prompt.index("</tool_response>")]
        assert response.count("<|vision_start|>") == 3
        assert backend.last_prompt_stats["images"] == 5


@pytest.mark.parametrize("arch", ARCHS)
def test_stop_string_truncates(backends: dict[str, HFBackend], arch: str) -> None:
    # Greedy decoding of a random tied-embedding model just repeats "\n"; hot sampling with a fixed seed gives
    # varied text, the same text again under the same seed, so a stop string taken from its middle must end it.
    base = backends[arch]
    backend = HFBackend(base.model, base.processor, name="hot", do_sample=True, temperature=3.0)
    torch.manual_seed(0)
    free = backend.generate(_conversation(), stop=[], max_new_tokens=16)
    free_tokens = backend.last_prompt_stats["new_tokens"]
    assert len(free) >= 8, "the random model ended its turn at once; change the seed"
    stop = free[len(free) // 2 : len(free) // 2 + 3]
    torch.manual_seed(0)
    cut = backend.generate(_conversation(), stop=[stop], max_new_tokens=16)
    assert cut == truncate_at_stop(free, [stop])
    assert cut.endswith(stop) and len(cut) < len(free)
    assert backend.last_prompt_stats["new_tokens"] < free_tokens  # generation itself stopped, not just the text


def test_zero_new_tokens_and_text_only(backends: dict[str, HFBackend]) -> None:
    backend = backends["qwen3_vl"]
    assert backend.generate(_conversation(), stop=["</answer>"], max_new_tokens=0) == ""
    assert isinstance(backend.generate([{"role": "user", "content": "plain"}], stop=[], max_new_tokens=2), str)
    assert backend.last_prompt_stats["images"] == backend.last_prompt_stats["grid_rows"] == 0


@pytest.mark.parametrize("arch", ARCHS)
def test_saved_folder_is_stock(saved: dict[str, Path], arch: str) -> None:
    """The folder names only stock transformers classes, so it loads anywhere transformers does (with
    torchvision, through AutoProcessor; here, through the image-only variant of the same class)."""
    import transformers
    from transformers import AutoModelForImageTextToText

    from medscope.agent.backends.processors import load_processor

    stock = {"qwen3_vl": "Qwen3VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor"}[arch]
    assert json.loads((saved[arch] / "processor_config.json").read_text())["processor_class"] == stock
    processor = load_processor(saved[arch])
    assert type(processor).__name__ == stock and isinstance(processor, getattr(transformers, stock))
    model = AutoModelForImageTextToText.from_pretrained(saved[arch], local_files_only=True)
    assert model.config.model_type == arch
    video = json.loads((saved[arch] / "video_preprocessor_config.json").read_text())
    assert video["patch_size"] == tiny.PATCH_SIZE[arch]


@pytest.mark.parametrize("arch", ARCHS)
def test_saved_tokenizer_keeps_protocol_tags(backends: dict[str, HFBackend], arch: str) -> None:
    tok = backends[arch].tokenizer
    for tag in tiny.PROTOCOL_TOKENS:
        assert tok.encode(tag, add_special_tokens=False) == [tok.convert_tokens_to_ids(tag)]
    ids = tok.encode(TAGGED, add_special_tokens=False)
    assert tok.decode(ids) == TAGGED
    assert tok.decode(ids, skip_special_tokens=True) == TAGGED


@pytest.mark.parametrize("arch", ARCHS)
def test_model_matches_tokenizer_and_processor(backends: dict[str, HFBackend], arch: str) -> None:
    backend = backends[arch]
    config, tok = backend.model.config, backend.tokenizer
    assert config.text_config.vocab_size == len(tok)
    assert config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert config.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert config.vision_config.patch_size == backend.processor.image_processor.patch_size == tiny.PATCH_SIZE[arch]
    assert backend.processor.chat_template == tiny.load_chat_template(arch)
    assert sum(p.numel() for p in backend.model.parameters()) < 2_000_000


def test_missing_model_dir(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        HFBackend.from_pretrained(missing)


def test_builtin_model_is_found_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medscope.models import BUILTIN_MODEL, builtin_model_path, resolve_model

    shipped = builtin_model_path()
    assert Path(resolve_model(None)) == shipped == Path(resolve_model(BUILTIN_MODEL))
    assert (shipped / "model.safetensors").stat().st_size < 10_000_000  # "a few MB": it ships in the package
    assert "## Scores" in (shipped / "README.md").read_text()
    assert resolve_model("runs/x/grpo") == "runs/x/grpo"
    monkeypatch.chdir(tmp_path)
    (tmp_path / BUILTIN_MODEL).mkdir()
    assert resolve_model(BUILTIN_MODEL) == BUILTIN_MODEL  # a local folder of that name wins
    with pytest.raises(ValueError, match="built in: medscope-tiny"):
        builtin_model_path("medscope-huge")


class _ScriptedFirstTurn:
    """Real generation every turn; the first turn's text is replaced by a crop_video call, because a random
    model never writes one, so that the second prompt carries tool images through the real chat template."""

    def __init__(self, backend: HFBackend) -> None:
        self.backend = backend
        self.stats: list[dict[str, Any]] = []

    def identity(self) -> dict[str, str]:
        return self.backend.identity()

    def generate(self, messages: list[dict[str, Any]], *, stop: Any, max_new_tokens: int, turn: Any = None) -> str:
        text = self.backend.generate(messages, stop=stop, max_new_tokens=max_new_tokens, turn=turn)
        self.stats.append(dict(self.backend.last_prompt_stats))
        if len(self.stats) == 1:
            return '<think>look</think><tool_call>{"name": "crop_video", "arguments": ' \
                   '{"start_time": 30, "end_time": 46}}</tool_call>'
        return text


@pytest.mark.parametrize("arch", ARCHS)
def test_full_episode_through_the_loop(backends: dict[str, HFBackend], arch: str, synth_path: Path) -> None:
    from medscope.agent.loop import AgentConfig, run_episode

    driver = _ScriptedFirstTurn(backends[arch])
    # Decoded freely: six tokens cannot hold a call, so under the grammar the random model would be made to answer at
    # once; here its second turn must not answer, so that the forced turn comes (the grammar: test_grammar.py).
    config = AgentConfig(max_turns=2, max_new_tokens=6, grammar=False)
    episode = run_episode(driver, synth_path, "When does bleeding start?", config)
    assert len(episode.turns) == 3 and episode.turns[-1].forced  # two turns, then the forced-answer turn
    assert episode.turns[0].kind == "tool_call" and episode.turns[0].observation is not None
    first, second = driver.stats[0], driver.stats[1]
    assert first["images"] == first["grid_rows"] == 16  # the overview
    assert second["images"] == second["grid_rows"] == 16 + 8  # plus the crop's frames, in the tool turn
    for stats in driver.stats:
        assert stats["image_token_count"] == stats["expected_image_tokens"] > 0
    assert all(isinstance(t.raw, str) for t in episode.turns)
    assert episode.backend == {"backend": "hf", "model": f"tiny-{arch}"}
