"""A policy exported from a synthetic-tokenizer run keeps its token ids when reloaded under other data sizes."""
from configs import tiny
from rr1_jax.rl.run_setup import build_tokenizer, load_run_data


def test_exported_policy_loads_its_own_tokenizer(tmp_path):
    config = tiny.get_config()
    config.model.tokenizer = "synthetic:words"
    original = build_tokenizer(config, load_run_data(config), "Question: {question}\n")
    original.save_pretrained(tmp_path)  # what export_hf writes next to the weights
    config.data.synthetic.num_test = 40  # more test questions: a rebuilt word vocabulary would differ
    rebuilt = build_tokenizer(config, load_run_data(config), "Question: {question}\n")
    assert rebuilt.get_vocab() != original.get_vocab()  # the hazard is real (the test can fail)
    config.model.path = str(tmp_path)
    reloaded = build_tokenizer(config, load_run_data(config), "Question: {question}\n")
    assert reloaded.get_vocab() == original.get_vocab()
