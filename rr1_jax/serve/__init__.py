"""OpenAI-compatible serving."""
