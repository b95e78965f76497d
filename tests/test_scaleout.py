"""Scale-out configs parse with Accelerate and name classes that exist in the installed transformers."""

from __future__ import annotations

from pathlib import Path

import pytest

accelerate_config = pytest.importorskip("accelerate.commands.config.config_args")

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "accelerate"


@pytest.mark.parametrize(("name", "kind", "processes"), [
    ("zero3.yaml", "DEEPSPEED", 8), ("zero3_multinode.yaml", "DEEPSPEED", 16), ("fsdp.yaml", "FSDP", 8),
])
def test_accelerate_configs_parse(name: str, kind: str, processes: int) -> None:
    config = accelerate_config.load_config_from_file(str(CONFIGS / name))
    assert config.distributed_type.value == kind and config.num_processes == processes
    assert config.mixed_precision == "bf16" and not config.use_cpu
    if kind == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == 3
    else:
        import transformers.models.qwen3_vl.modeling_qwen3_vl as qwen3_vl

        for cls in config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(","):
            assert hasattr(qwen3_vl, cls), f"{cls} is not a Qwen3-VL module class: FSDP would wrap nothing"
