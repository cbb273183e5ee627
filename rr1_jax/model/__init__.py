"""Flax NNX decoder (Llama-3 / Qwen2 / SmolLM2), critic, weight import/export, tokenizer."""
