"""Evaluation: metrics (pure functions), the LLM judge, resumable runs, tables."""
