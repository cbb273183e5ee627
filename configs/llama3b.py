"""Router-R1's Llama-3.2-3B-Instruct run: upstream's hyper-parameters (see configs/qwen3b.py), Llama weights
and Router-R1's Llama prompt template.

Weights from a local HF directory: `--config.model.path=/models/Llama-3.2-3B-Instruct` or $RR1_LLAMA3B_PATH.
Llama-3.2 has no pad token: the EOS token pads, as verl does. Memory and mesh per machine: docs/scaling.md.
"""
from configs import qwen3b


def get_config():
    c = qwen3b.get_config()
    c.workdir = "runs/llama3b"
    c.model.family = "llama3_2_3b"
    c.model.path = "$RR1_LLAMA3B_PATH"
    c.prompt.family = "llama"
    return c
