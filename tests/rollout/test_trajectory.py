"""Trajectory batch assembly: verl layout, masks, dummy rows."""
import numpy as np
import pytest

from rr1_jax.rollout.trajectory import build_trajectories, pick_width


def test_layout_and_masks():
    traj = build_trajectories(
        prompts=[[5, 6, 7], [8]], responses=[[1, 2, 9, 9, 3], [4]],
        policy_flags=[[True, True, False, False, True], [True]], logprobs=[[-.1, -.2, 0, 0, -.3], [-.5]],
        prompt_width=4, response_width=6, pad_id=0, num_rows=3)
    np.testing.assert_array_equal(traj.tokens[0], [0, 5, 6, 7, 1, 2, 9, 9, 3, 0])
    np.testing.assert_array_equal(traj.tokens[1], [0, 0, 0, 8, 4, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(traj.positions[0], [0, 0, 1, 2, 3, 4, 5, 6, 7, 0])
    np.testing.assert_array_equal(traj.loss_mask[0], [1, 1, 0, 0, 1, 0])
    np.testing.assert_array_equal(traj.response_mask[0], [1, 1, 1, 1, 1, 0])
    np.testing.assert_allclose(traj.old_logprobs[0], [-.1, -.2, 0, 0, -.3, 0], rtol=1e-6)
    assert not traj.attention_mask[2].any() and not traj.loss_mask[2].any()
    np.testing.assert_array_equal(traj.row_valid, [True, True, False])
    assert traj.response_width == 6


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match="exceeds response_width"):
        build_trajectories([[1]], [[1, 2, 3]], [[True] * 3], None, 2, 2, 0)
    with pytest.raises(ValueError, match="policy flags"):
        build_trajectories([[1]], [[1, 2]], [[True]], None, 2, 2, 0)
    with pytest.raises(ValueError, match="largest bucket"):
        pick_width(600, [128, 512])
    assert pick_width(129, [512, 128, 256]) == 256
