"""Jitted KV-cache generation: prefill, segment decode with stop strings, observation append."""
