"""Training: the built-in tiny model (tiny.py); SFT and GA-GRPO stages come later."""
