"""Router-R1 rollout: prompts, action parsing, candidate pool, multi-turn worker."""
