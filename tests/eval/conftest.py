"""Shared evaluation fixtures: a small byte-level chat tokenizer saved as an HF directory, and a small synthetic
config that runs the whole evaluation on CPU in seconds."""
import pytest

from tests.byte_tokenizer import byte_tokenizer


@pytest.fixture(scope="session")
def byte_tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("byte_tokenizer")
    byte_tokenizer().save_pretrained(str(path))
    return str(path)


def small_config(out_dir: str, policy: str = "tiny", tokenizer: str = ""):
    """The synthetic evaluation at toy size: 6 questions, 1 routed turn, a few tokens per turn."""
    from configs import eval_synthetic

    c = eval_synthetic.get_config()
    c.policy, c.tokenizer, c.out = policy, tokenizer, out_dir
    c.synthetic.num_train, c.synthetic.num_test = 16, 8
    c.num_questions, c.num_train = 6, 12
    c.prompt = "compact"
    c.generation.num_slots, c.generation.max_turns = 8, 1
    c.generation.max_turn_tokens, c.generation.max_obs_length, c.generation.segment_steps = 8, 64, 8
    c.sampled_seeds = 2
    c.knn_k = 3
    return c
