"""The training stages' configs, apart from the trainers so that reading them (the CLI, ``--help``) loads no
deep-learning library. ``medscope.train.sft`` and ``medscope.train.grpo`` use them."""

from __future__ import annotations

from dataclasses import dataclass, field

from medscope.agent.loop import AgentConfig
from medscope.train.rewards import RewardConfig

REPORTERS = ("none", "tensorboard", "wandb")
REPORT_HELP = "none | tensorboard | wandb: where the training curves go (TensorBoard is offline: OUT/runs/)"


def check_report_to(value: str) -> None:
    if value not in REPORTERS:
        raise ValueError(f"--report-to {value!r}: use one of {', '.join(REPORTERS)}")


@dataclass(frozen=True)
class SFTStageConfig:
    """One SFT stage. Hyperparameter defaults are for a 7B model on a GPU (the paper gives none for SFT: these
    are the usual Qwen2.5-VL SFT values); the tiny preset overrides them."""

    stage: int = field(default=2, metadata={"help": "1: warm-up on samples.jsonl, 2: cold start on trajectories"})
    data: str = field(default="", metadata={"help": "samples.jsonl (stage 1) or trajectories.jsonl (stage 2)"})
    model: str = field(default="", metadata={"help": "local model folder to start from (save_pretrained output)"})
    out: str = field(default="", metadata={"help": "output folder: checkpoints, then the trained model"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the data"})
    lr: float = field(default=1e-5, metadata={"help": "peak learning rate (cosine schedule)"})
    batch_size: int = field(default=1, metadata={"help": "conversations per device step"})
    grad_accum: int = field(default=8, metadata={"help": "steps accumulated per optimizer update"})
    lora: bool = field(default=False, metadata={"help": "train LoRA adapters (merged into the saved model)"})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=128, metadata={"help": "LoRA alpha"})
    save_steps: int = field(default=200, metadata={"help": "optimizer updates between checkpoints"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many updates (-1: run all epochs)"})
    seed: int = field(default=0, metadata={"help": "random seed (data order, dropout, LoRA init)"})
    limit: int = field(default=0, metadata={"help": "use only the first N records (0: all)"})
    gradient_checkpointing: bool = field(
        default=True, metadata={"help": "recompute activations in backward: less memory, about a third more time"}
    )
    report_to: str = field(default="none", metadata={"help": REPORT_HELP})
    repair: float = field(default=0.0, metadata={"help": "stage 2: share of trajectories shown with a slip (a window "
                                                         "that ends where it starts), its tool error and the repair"})
    rows: str = field(default="", metadata={"help": "the rows built beforehand (`sft.save_rows`: a folder) instead "
                                                    "of building them here; refused unless built from these settings"})
    # The frames and the system prompt must be the ones the trajectories were built with and the agent runs with.
    agent: AgentConfig = field(default_factory=AgentConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.repair <= 1.0:
            raise ValueError(f"repair is a share of the trajectories, in [0, 1]; got {self.repair}")
        if self.stage not in (1, 2):
            raise ValueError(f"stage must be 1 (warm-up) or 2 (cold start), got {self.stage}")
        for name in ("batch_size", "grad_accum", "save_steps", "lora_r", "lora_alpha"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.limit < 0 or self.epochs <= 0 or self.lr <= 0:
            raise ValueError(f"need limit >= 0, epochs > 0 and lr > 0, got {self.limit}, {self.epochs}, {self.lr}")
        check_report_to(self.report_to)


@dataclass(frozen=True)
class GRPOStageConfig:
    data: str = field(default="", metadata={"help": "samples.jsonl of the suite (the prompts)"})
    model: str = field(default="", metadata={"help": "folder of the starting model, e.g. the SFT output"})
    out: str = field(default="", metadata={"help": "output folder: checkpoints and the final model"})
    group_size: int = field(default=8, metadata={"help": "rollouts per prompt (G)"})
    lr: float = field(default=1e-6, metadata={"help": "learning rate (the paper's, for a 7B model)"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the prompts (when max_steps < 0)"})
    max_steps: int = field(default=-1, metadata={"help": "optimizer steps; < 0: run the epochs"})
    batch_size: int = field(default=8, metadata={"help": "rollouts per device per micro-batch"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    max_completion_length: int = field(
        default=4096, metadata={"help": "tokens of a whole rollout after the prompt, tool results and frames included"}
    )
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of the rollouts"})
    kl: float = field(default=0.0, metadata={"help": "KL coefficient beta; > 0 loads a reference model"})
    w_acc: float = field(default=1.0, metadata={"help": "weight of the answer reward in R"})
    w_fmt: float = field(default=1.0, metadata={"help": "weight of the format reward in R"})
    w_evi: float = field(default=1.0, metadata={"help": "weight of the evidence reward (crop + frame) in R"})
    # Switches are named for what they keep on, so the generated flags read --no-evidence-reward etc. (argparse
    # treats any flag starting with --no- as the negative of a boolean).
    evidence_reward: bool = field(
        default=True,
        metadata={"help": "R includes R_evi (--no-evidence-reward: the ablation; R_evi is still logged and read by "
                          "the modulation: add --no-modulation to drop every evidence signal)"},
    )
    crop_bonus: bool = field(
        default=True, metadata={"help": "piecewise IoU bonus on crop_video (--no-crop-bonus: plain IoU)"}
    )
    coarse_penalty: float = field(
        default=-1.0, metadata={"help": "R_crop of a last crop that overlaps the truth with IoU < 0.5 (the paper's "
                                        "-1; 0: a coarse crop never scores below a miss, for a policy whose crops "
                                        "rarely reach 0.5)"}
    )
    grounding_iou: bool = field(
        default=False, metadata={"help": "R_acc of a grounding answer is its IoU with the truth (dense) instead of "
                                         "the evaluator's 0 / 0.5 / 1 (which pays any overlap 0.5)"}
    )
    modulation: bool = field(
        default=True, metadata={"help": "evidence-weighted advantage modulation (--no-modulation: the ablation)"}
    )
    std_normalise: bool = field(default=False, metadata={"help": "divide advantages by the group's reward std"})
    lora: bool = field(default=False, metadata={"help": "train LoRA adapters (merged when saving)"})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=128, metadata={"help": "LoRA alpha"})
    gradient_checkpointing: bool = field(default=True, metadata={"help": "recompute activations in backward"})
    prefix_cache: bool = field(
        default=True, metadata={"help": "transformers rollouts under the grammar: keep each rollout's attention cache "
                                        "between its turns within a step, so a turn encodes only what it adds"})
    use_vllm: bool = field(default=False, metadata={"help": "generate with vLLM (GPU, vllm installed)"})
    vllm_mode: str = field(default="colocate", metadata={"help": "colocate | server"})
    save_steps: int = field(default=100, metadata={"help": "steps between checkpoints"})
    logging_steps: int = field(default=1, metadata={"help": "steps between log lines"})
    seed: int = field(default=0, metadata={"help": "seed of sampling and shuffling"})
    limit: int = field(default=0, metadata={"help": "use only the first N samples (0: all)"})
    report_to: str = field(default="none", metadata={"help": REPORT_HELP})
    # System prompt, tool sizes and turn budget, as at inference: a rollout gets ``agent.max_turns`` tool rounds,
    # the number the system prompt states and the agent loop allows, so training never scores as a format failure
    # an episode that inference would have let finish.
    agent: AgentConfig = field(default_factory=AgentConfig)

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (advantages are relative to the group), got {self.group_size}")
        if (self.batch_size * self.grad_accum) % self.group_size:
            raise ValueError(f"batch_size * grad_accum ({self.batch_size} * {self.grad_accum}) must be a multiple of "
                             f"group_size ({self.group_size}): each optimizer step sees whole groups")
        if self.vllm_mode not in ("colocate", "server"):
            raise ValueError(f"vllm_mode must be 'colocate' or 'server', got {self.vllm_mode!r}")
        if self.limit < 0 or self.lr <= 0:
            raise ValueError(f"need limit >= 0 and lr > 0, got {self.limit}, {self.lr}")
        check_report_to(self.report_to)

    @property
    def reward(self) -> RewardConfig:
        """The reward settings of this run; h0, Δ and η stay at the paper's values."""
        return RewardConfig(w_acc=self.w_acc, w_fmt=self.w_fmt, w_evi=self.w_evi,
                            evidence_reward=self.evidence_reward, crop_bonus=self.crop_bonus,
                            coarse_penalty=self.coarse_penalty, grounding_iou=self.grounding_iou)
