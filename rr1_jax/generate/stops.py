"""Stop strings: an exact in-jit matcher over token bytes, and the host-side cut that mirrors upstream.

In-jit matching. A stop string can be produced by many token sequences (`</search>` as one token, as `</` +
`search` + `>`, or ending inside a token such as `>\\n`, or starting inside one such as `text</`). Instead of
enumerating those sequences into a table of token tuples (which grows with every prefix/suffix-sharing token of
the vocabulary and still misses some), we compile the stop strings into an Aho-Corasick automaton over *bytes* and
lift it to tokens: `table[q, t]` is the automaton state after reading token t's bytes from state q, or
`num_states + k` when stop string k completes somewhere inside those bytes. Each decode step is then one gather
per slot (`state = table[state, token]`), and a slot stops exactly on the token that completes the string, however
the string was split. The table is [num_states, V] int16 (17 states for the two default strings: ~1.7 MB for a
49k vocab, ~4.4 MB for 128k), built with vectorised NumPy in well under a second.

Limits. Matching runs on the concatenation of each token's bytes with special tokens contributing nothing: this
equals upstream's `decode(..., skip_special_tokens=True)` for byte-level BPE (GPT-2/Llama-3/Qwen2/SmolLM2) tokenizers.
Tokenizers whose decode is not a plain concatenation (SentencePiece `▁` leading-space handling, decoder
clean-up rules, WordLevel space joining) can differ at the edges; the host-side cut below is the safety net.
The automaton restarts at every turn (prefill/append), so a string is only matched within one policy turn.

Host side. Upstream decodes each turn, cuts the text right after the first `</search>` if present, else after the
first `</answer>` (spec/router-r1.md §5.3; `</search>` wins even if `</answer>` comes first), then *re-tokenises*
the cut text for training. We keep the **sampled ids** instead (no decode/re-encode round trip, so training
log-probs are of the exact tokens the behaviour policy sampled): `ids_through_stop` maps the text cut back onto
the ids, keeping every id up to and including the one that completes the stop string. The completing token may
carry a few bytes beyond the string (e.g. `>\\n`); those stay in the training ids, unlike upstream's cut text.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Optional, Sequence

import jax.numpy as jnp
import numpy as np

DEFAULT_STOP_STRINGS = ("</search>", "</answer>")  # order = upstream cut precedence


def _byte_automaton(patterns: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Aho-Corasick DFA: (goto [Q, 256] int32, match [Q] int32 = index of the pattern ending there, or -1)."""
    children: list[dict[int, int]] = [{}]
    match = [-1]
    for index, pattern in enumerate(patterns):
        state = 0
        for byte in pattern:
            if byte not in children[state]:
                children.append({})
                match.append(-1)
                children[state][byte] = len(children) - 1
            state = children[state][byte]
        if match[state] < 0:
            match[state] = index
    goto = np.zeros((len(children), 256), np.int32)
    fail = [0] * len(children)
    queue = collections.deque()
    for byte, child in children[0].items():
        goto[0, byte] = child
        queue.append(child)
    while queue:  # breadth-first: a state's failure target is final before the state is expanded
        state = queue.popleft()
        if match[state] < 0 and match[fail[state]] >= 0:
            match[state] = match[fail[state]]  # a shorter pattern ends here too
        goto[state] = goto[fail[state]]
        for byte, child in children[state].items():
            fail[child] = goto[fail[state], byte]
            goto[state, byte] = child
            queue.append(child)
    return goto, np.asarray(match, np.int32)


@dataclasses.dataclass(frozen=True)
class StopMatcher:
    """Stop strings compiled against one vocabulary; see the module docstring."""

    strings: tuple[str, ...]
    table: np.ndarray  # [num_states, V] int16: next state, or num_states + k when string k completes
    num_states: int

    @classmethod
    def build(cls, strings: Sequence[str], token_bytes: Sequence[bytes]) -> "StopMatcher":
        """Compile `strings` for a vocabulary given as each token id's decoded bytes (b"" for special tokens)."""
        strings = tuple(strings)
        if any(not s for s in strings):
            raise ValueError(f"stop strings must be non-empty, got {strings!r}")
        goto, match = _byte_automaton([s.encode("utf-8") for s in strings])
        num_states, vocab = goto.shape[0], len(token_bytes)
        if num_states + len(strings) >= np.iinfo(np.int16).max:
            raise ValueError(f"stop strings {strings!r} are too long for an int16 automaton")
        lengths = np.fromiter((len(b) for b in token_bytes), np.int64, vocab)
        order = np.argsort(-lengths, kind="stable")  # longest first: step i touches a prefix of `order`
        padded = np.zeros((vocab, max(int(lengths.max(initial=0)), 1)), np.uint8)
        for row, token in enumerate(token_bytes):
            padded[row, :len(token)] = np.frombuffer(token, np.uint8)
        padded, sorted_lengths = padded[order], lengths[order]
        state = np.repeat(np.arange(num_states, dtype=np.int32)[:, None], vocab, axis=1)  # [Q, V] (sorted order)
        matched = np.full((num_states, vocab), -1, np.int32)
        for i in range(padded.shape[1]):
            n = int(np.searchsorted(-sorted_lengths, -i, side="left"))  # tokens longer than i
            if n == 0:
                break
            live = matched[:, :n] < 0
            nxt = goto[state[:, :n], padded[None, :n, i]]  # [Q, n]
            state[:, :n] = np.where(live, nxt, state[:, :n])
            matched[:, :n] = np.where(live, match[nxt], matched[:, :n])
        result = np.where(matched >= 0, num_states + matched, state)
        table = np.empty_like(result)
        table[:, order] = result
        return cls(strings, table.astype(np.int16), num_states)

    @classmethod
    def empty(cls, vocab_size: int) -> "StopMatcher":
        """No stop strings: a one-state automaton that never fires."""
        return cls((), np.zeros((1, vocab_size), np.int16), 1)


def advance_matcher(table, num_states: int, state, tokens):
    """In-jit step. table [Q, V], state [B], tokens [B] -> (next state [B], completed string index [B] or -1)."""
    value = table[state, tokens].astype(jnp.int32)  # [B]
    completed = jnp.where(value >= num_states, value - num_states, -1)
    return jnp.where(completed >= 0, 0, value), completed


# ----------------------------------------------------------------------------------------------------------
# vocabularies as bytes
# ----------------------------------------------------------------------------------------------------------
def _gpt2_unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's byte -> printable-unicode map used by byte-level BPE vocabularies."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def token_bytes_from_tokenizer(tokenizer) -> list[bytes]:
    """Each id's decoded bytes (special tokens: b"") for a `tokenizers.Tokenizer` or a transformers tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)  # transformers fast tokenizer -> tokenizers
    vocab_size = backend.get_vocab_size(with_added_tokens=True)
    special = {i for i, t in backend.get_added_tokens_decoder().items() if t.special}
    byte_level = type(backend.decoder).__name__ == "ByteLevel"
    to_byte = _gpt2_unicode_to_byte()
    out = []
    for i in range(vocab_size):
        piece = backend.id_to_token(i)
        if piece is None or i in special:
            out.append(b"")
        elif byte_level and all(c in to_byte for c in piece):
            out.append(bytes(to_byte[c] for c in piece))
        else:
            out.append(backend.decode([i], skip_special_tokens=True).encode("utf-8"))
    return out


# ----------------------------------------------------------------------------------------------------------
# host-side cut (upstream `_postprocess_responses`)
# ----------------------------------------------------------------------------------------------------------
def stop_cut_end(text, stops: Sequence = DEFAULT_STOP_STRINGS) -> Optional[int]:
    """End index right after the first occurrence of the first stop (in precedence order) present, else None."""
    for stop in stops:
        at = text.find(stop)
        if at >= 0:
            return at + len(stop)
    return None


def upstream_cut(text: str, stops: Sequence[str] = DEFAULT_STOP_STRINGS) -> str:
    """Upstream's turn text: cut after the first `</search>`, else after the first `</answer>`, else unchanged."""
    end = stop_cut_end(text, stops)
    return text if end is None else text[:end]


def ids_through_stop(ids: Sequence[int], token_bytes: Sequence[bytes],
                     stops: Sequence[str] = DEFAULT_STOP_STRINGS) -> int:
    """How many sampled ids to keep: through the id completing the upstream cut, or all when no stop occurs."""
    pieces = [token_bytes[i] for i in ids]
    end = stop_cut_end(b"".join(pieces), [s.encode("utf-8") for s in stops])
    if end is None:
        return len(pieces)
    ends = np.cumsum([len(p) for p in pieces])
    return int(np.searchsorted(ends, end, side="left")) + 1
