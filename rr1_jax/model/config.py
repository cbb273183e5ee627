"""Model-family configs: one frozen dataclass covers Llama-3.x, Qwen2/2.5 and SmolLM2 decoders."""
from __future__ import annotations

import dataclasses
from typing import Optional

REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Llama-3 frequency-dependent RoPE scaling (HF `rope_type: llama3`)."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shapes and numerics of a decoder-only transformer (RMSNorm, rotate-half RoPE, GQA, SwiGLU)."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 500_000.0
    rope_scaling: Optional[RopeScaling] = None
    qkv_bias: bool = False  # Qwen2 has q/k/v biases; Llama and SmolLM2 do not.
    tie_embeddings: bool = False  # LM head shares the token embedding matrix.
    max_position_embeddings: int = 8192
    architecture: str = "llama"  # "llama" or "qwen2": decides the HF export class.
    dtype: str = "float32"  # compute dtype (bf16 on accelerators)
    param_dtype: str = "float32"  # master-weight dtype
    remat: str = "none"  # rematerialisation policy of each scanned layer, one of REMAT_POLICIES
    bos_token_id: Optional[int] = None
    eos_token_ids: tuple[int, ...] = ()

    def __post_init__(self):
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} must be a multiple of num_kv_heads={self.num_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for rotary embeddings")
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat={self.remat!r}: choose one of {REMAT_POLICIES}")
        if self.architecture not in ("llama", "qwen2"):
            raise ValueError(f"architecture={self.architecture!r}: supported are 'llama' and 'qwen2'")

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    @property
    def num_params(self) -> int:
        """Parameter count (embedding counted once when tied)."""
        d, h, k, hd, f = self.hidden_size, self.num_heads, self.num_kv_heads, self.head_dim, self.intermediate_size
        attn = d * h * hd * 2 + d * k * hd * 2 + (h * hd + 2 * k * hd if self.qkv_bias else 0)
        per_layer = attn + 3 * d * f + 2 * d
        head = 0 if self.tie_embeddings else d * self.vocab_size
        return self.vocab_size * d + self.num_layers * per_layer + d + head

    # ---- named constructors (published shapes of each family) ----
    @classmethod
    def llama3_2_1b(cls, **kw) -> "ModelConfig":
        return cls(vocab_size=128256, hidden_size=2048, num_layers=16, num_heads=32, num_kv_heads=8, head_dim=64,
                   intermediate_size=8192, rope_theta=500_000.0, tie_embeddings=True, max_position_embeddings=131072,
                   rope_scaling=RopeScaling(32.0, 1.0, 4.0, 8192), bos_token_id=128000,
                   eos_token_ids=(128001, 128008, 128009), **kw)

    @classmethod
    def llama3_2_3b(cls, **kw) -> "ModelConfig":
        return cls(vocab_size=128256, hidden_size=3072, num_layers=28, num_heads=24, num_kv_heads=8, head_dim=128,
                   intermediate_size=8192, rope_theta=500_000.0, tie_embeddings=True, max_position_embeddings=131072,
                   rope_scaling=RopeScaling(32.0, 1.0, 4.0, 8192), bos_token_id=128000,
                   eos_token_ids=(128001, 128008, 128009), **kw)

    @classmethod
    def qwen2_5_3b(cls, **kw) -> "ModelConfig":
        return cls(vocab_size=151936, hidden_size=2048, num_layers=36, num_heads=16, num_kv_heads=2, head_dim=128,
                   intermediate_size=11008, rms_norm_eps=1e-6, rope_theta=1_000_000.0, qkv_bias=True,
                   tie_embeddings=True, max_position_embeddings=32768, architecture="qwen2",
                   eos_token_ids=(151645, 151643), **kw)

    @classmethod
    def qwen2_5_0_5b(cls, **kw) -> "ModelConfig":
        return cls(vocab_size=151936, hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2, head_dim=64,
                   intermediate_size=4864, rms_norm_eps=1e-6, rope_theta=1_000_000.0, qkv_bias=True,
                   tie_embeddings=True, max_position_embeddings=32768, architecture="qwen2",
                   eos_token_ids=(151645, 151643), **kw)

    @classmethod
    def smollm2_135m(cls, **kw) -> "ModelConfig":
        return cls(vocab_size=49152, hidden_size=576, num_layers=30, num_heads=9, num_kv_heads=3, head_dim=64,
                   intermediate_size=1536, rope_theta=100_000.0, tie_embeddings=True, max_position_embeddings=8192,
                   bos_token_id=1, eos_token_ids=(2,), **kw)

    @classmethod
    def tiny(cls, **kw) -> "ModelConfig":
        """A 2-layer toy for tests: every feature (GQA, untied head) at CPU-friendly size."""
        base = dict(vocab_size=512, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                    intermediate_size=128, rope_theta=10_000.0, max_position_embeddings=2048)
        base.update(kw)
        return cls(**base)

    @classmethod
    def named(cls, name: str, **kw) -> "ModelConfig":
        """Look a family up by constructor name, e.g. `ModelConfig.named("qwen2_5_3b", dtype="bfloat16")`;
        keyword arguments replace any field (sizes included)."""
        names = ("llama3_2_1b", "llama3_2_3b", "qwen2_5_3b", "qwen2_5_0_5b", "smollm2_135m", "tiny")
        if name not in names:
            raise ValueError(f"unknown model family {name!r}; choose one of {names}")
        return getattr(cls, name)().replace(**kw)
