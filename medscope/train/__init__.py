"""Training: the tiny built-in model (tiny.py), conversations in the agent's protocol (data.py), SFT stages 1-2
(sft.py), GA-GRPO rewards (rewards.py) and stage 3 (env.py, grpo.py), and the whole recipe (pipeline.py)."""
