"""The serving queue: a request cancelled while queued (client timeout or disconnect) frees its place at once."""
import asyncio
import types

import pytest

from rr1_jax.serve.engine import ContinuousBatcher, QueueFull


def test_a_cancelled_queued_request_gives_its_place_back():
    batcher = ContinuousBatcher(types.SimpleNamespace(num_slots=1), segment_steps=4, max_queue=1)

    async def go():
        batcher._wake = asyncio.Event()
        batcher._task = asyncio.get_running_loop().create_future()  # a running loop whose only slot stays busy
        first, second = types.SimpleNamespace(cancelled=False), types.SimpleNamespace(cancelled=False)
        batcher.submit(first)
        with pytest.raises(QueueFull):
            batcher.submit(second)
        batcher.cancel(first)
        batcher.submit(second)
        assert list(batcher.pending) == [second] and first.cancelled and batcher.stats()["queued"] == 1
        batcher._task.cancel()

    asyncio.run(go())
