"""rr1_jax: Router-R1 (LLM routing learned with PPO) in JAX/Flax."""

__version__ = "0.1.0"
