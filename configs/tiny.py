"""A toy policy on the synthetic task against the simulated pool: the configuration tests run end to end on CPU."""
from configs import base


def get_config():
    c = base.get_config()
    c.workdir = "runs/tiny"
    c.model.family = "tiny"
    c.model.path = ""
    c.model.tokenizer = "synthetic:512"
    c.data.batch_size = 8
    c.data.val_size = 8
    c.data.synthetic.update(dict(seed=0, num_train=64, num_test=16))
    c.pool.kind = "simulated"
    c.pool.latency_scale = 0.0
    c.prompt.template = "compact"
    c.rollout.update(dict(max_turns=1, max_turn_tokens=16, max_obs_length=32, max_prompt_tokens=256,
                          segment_steps=16, response_buckets=(128,)))
    c.ppo.update(dict(mini_batch_size=8, micro_batch_size=4))
    c.optim.actor.lr = 1e-4
    c.optim.critic.lr = 1e-4
    c.train.update(dict(total_steps=2, val_every=0, export_hf=False))
    c.checkpoint.update(dict(save_every=1, async_save=False))
    c.metrics.update(dict(tensorboard=False, progress=False))
    return c
