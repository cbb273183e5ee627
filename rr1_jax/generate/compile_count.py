"""Count XLA compilations in a block of code (tests assert a second rollout compiles nothing)."""
from __future__ import annotations

import contextlib
from typing import Iterator

import jax

_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileCounter:
    """Number of backend compilations seen while the context was open, and their total duration."""

    def __init__(self):
        self.count = 0
        self.seconds = 0.0

    def _listener(self, event: str, duration_secs: float, **kwargs) -> None:
        if event == _BACKEND_COMPILE_EVENT:
            self.count += 1
            self.seconds += duration_secs


@contextlib.contextmanager
def count_compilations() -> Iterator[CompileCounter]:
    """`with count_compilations() as c: ...; assert c.count == 0` (cache hits record no compile event)."""
    counter = CompileCounter()
    jax.monitoring.register_event_duration_secs_listener(counter._listener)
    try:
        yield counter
    finally:
        jax.monitoring.unregister_event_duration_listener(counter._listener)
