"""Rewards and PPO/GRPO algorithms as pure functions; trainer."""
