"""Jitted KV-cache generation: prefill, segment decode with stop strings, observation append."""
from rr1_jax.generate.buckets import pad_batch, pad_to_bucket, pick_bucket
from rr1_jax.generate.compile_count import count_compilations
from rr1_jax.generate.sampler import DecodeState, Sampler, SegmentOutput, StopReason
from rr1_jax.generate.sampling import SamplingParams, behaviour_log_probs, sample_tokens
from rr1_jax.generate.single_turn import generate
from rr1_jax.generate.stops import (DEFAULT_STOP_STRINGS, StopMatcher, ids_through_stop, token_bytes_from_tokenizer,
                                    upstream_cut)

__all__ = ["DEFAULT_STOP_STRINGS", "DecodeState", "Sampler", "SamplingParams", "SegmentOutput", "StopMatcher",
           "StopReason", "behaviour_log_probs", "count_compilations", "generate", "ids_through_stop", "pad_batch",
           "pad_to_bucket", "pick_bucket", "sample_tokens", "token_bytes_from_tokenizer", "upstream_cut"]
