"""On-disk cache of routed-call replies, keyed by (model id, messages, sampling parameters).

SQLite in WAL mode: safe for concurrent use from one process (a lock serialises access from any thread) and
for several processes sharing a file. Only complete replies with usage are stored. The key deliberately leaves
out the endpoint URL, so replies recorded against one deployment replay against another serving the same model
id; keep separate files for endpoints that answer differently (e.g. the simulated pool vs a live API).
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from typing import NamedTuple, Optional


class CachedReply(NamedTuple):
    content: str
    completion_tokens: int
    prompt_tokens: int


def request_key(payload: dict) -> str:
    """Stable key of a chat-completions request body (every field but the stream flag matters)."""
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """`get(payload)` / `put(payload, reply)` over one SQLite file."""

    def __init__(self, path: str):
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise ValueError(f"response cache {path!r}: folder {folder!r} does not exist; create it or change "
                             f"PoolConfig.cache_path")
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30.0)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, model TEXT, content TEXT, "
                             "completion_tokens INTEGER, prompt_tokens INTEGER)")
            self._db.commit()

    def get(self, payload: dict) -> Optional[CachedReply]:
        with self._lock:
            row = self._db.execute("SELECT content, completion_tokens, prompt_tokens FROM replies WHERE key = ?",
                                   (request_key(payload),)).fetchone()
        return None if row is None else CachedReply(*row)

    def put(self, payload: dict, reply: CachedReply) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?)",
                             (request_key(payload), payload.get("model"), *reply))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
