"""benchmarks/advantage_bias.py: the group-std division favours the reliable small reward; without it, it does not."""
import numpy as np

from benchmarks.advantage_bias import OUTCOMES, draw, mean_advantages


def test_std_division_rewards_being_the_groups_best_not_by_how_much():
    kinds, rewards = draw(np.asarray([0.2, 0.65, 0.15]), groups=4000, group_size=4)
    assert kinds.shape == rewards.shape == (16_000,) and len(OUTCOMES) == 3
    expensive, cheap = rewards[kinds == 0].mean(), rewards[kinds == 1].mean()
    assert abs(expensive - cheap) < 0.03  # about the same expected reward (0.108 vs 0.096)
    with_std = mean_advantages(kinds, rewards, 4, norm_by_std=True)
    without = mean_advantages(kinds, rewards, 4, norm_by_std=False)
    assert with_std[0] > 4 * with_std[1]  # divided by the group's std: ~6.7x
    assert 0.8 < without[0] / without[1] < 1.3  # not divided: follows the rewards
    assert with_std[2] < 0 and without[2] < 0  # no valid call is pushed down either way
