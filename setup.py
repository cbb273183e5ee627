"""Package metadata. Dependencies are pinned in requirements*.txt and installed by `make`."""
from setuptools import find_packages, setup

setup(
    name="rr1_jax",
    version="0.1.0",
    description="Router-R1 (multi-round LLM routing trained with PPO) in JAX/Flax",
    packages=find_packages(include=["rr1_jax", "rr1_jax.*", "configs"]),
    python_requires=">=3.11",
)
