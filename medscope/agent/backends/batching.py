"""Concurrent episodes, one model: each thread's ``generate`` call waits until every episode running has asked for
its next turn (or ``size`` have), and the batch is decoded in one ``generate_batch`` call.

The agent loop stays one episode per thread, unchanged; only the model call is shared. A decoding step of a
batch costs less than its rows one by one (the tiny model on one CPU thread: eight rows 2.5x one row's time), so
``medscope eval --backend hf --workers N`` runs N episodes at once through this class. Greedy turns are the same
as decoded one at a time (prompts are padded on the left; a test checks it). Alone, batching gains little on a
CPU (medscope-tiny: 1.1-1.25x at 8, ``benchmarks/eval_batching.py``): every turn's conversation is encoded again
and a batch decodes as long as its longest turn. With the HF backend's prefix cache (``prefix_cache.py``) a turn
encodes only what it adds, and the batch shares the decoding steps.

Use: ``with batcher.episode(): run_episode(batcher, ...)`` in each thread. The ``episode`` count is what lets a
batch start without a timer: a batch starts when all running episodes wait, so an episode between turns (running
a tool) is waited for, and one that ends (or fails) no longer is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from medscope.agent.backends.base import Message, Request, backend_prompt

if TYPE_CHECKING:
    from medscope.agent.grammar import TurnFormat


@runtime_checkable
class BatchBackend(Protocol):
    """A backend that can decode several conversations' next turns in one call (``HFBackend``)."""

    def identity(self) -> dict[str, str]: ...

    def generate_batch(self, requests: Sequence[Request]) -> list[str]: ...


@dataclass
class _Pending:
    request: Request
    text: str | None = None
    error: BaseException | None = None


class BatchingBackend:
    """A ``Backend`` for many threads over one ``BatchBackend``, in batches of at most ``size`` turns."""

    def __init__(self, backend: BatchBackend, size: int) -> None:
        if size < 1:
            raise ValueError(f"batch size must be >= 1, got {size}")
        self.backend, self.size = backend, size
        # The model's system prompt passes through: the loop writes the prompt the model was trained with.
        self.prompt = backend_prompt(backend)
        self.batches: list[int] = []  # the size of every batch decoded, for benchmarks and tests
        self._lock = threading.Condition()
        self._episodes = 0
        self._waiting: list[_Pending] = []
        self._running = False

    def identity(self) -> dict[str, str]:
        return self.backend.identity()

    @contextmanager
    def episode(self) -> Iterator[None]:
        """Counts one running episode for as long as the block lasts."""
        with self._lock:
            self._episodes += 1
        try:
            yield
        finally:
            with self._lock:
                self._episodes -= 1
                batch = self._take()
            if batch:  # the others were waiting for this episode only
                self._decode(batch)

    def generate(self, messages: Sequence[Message], *, stop: Sequence[str], max_new_tokens: int,
                 turn: TurnFormat | None = None) -> str:
        mine = _Pending(Request(messages, tuple(stop), max_new_tokens, turn))
        with self._lock:
            self._waiting.append(mine)
        while True:
            with self._lock:
                if mine.text is not None or mine.error is not None:  # checked under the lock: no lost wake-up
                    break
                # A batch is taken only by a thread that will decode it: one whose turn is answered takes none.
                batch = self._take()
                if not batch:
                    self._lock.wait()
                    continue
            self._decode(batch)  # outside the lock: the others may queue meanwhile
        if mine.error is not None:
            raise mine.error
        assert mine.text is not None
        return mine.text

    def _take(self) -> list[_Pending]:
        """Under the lock: the next batch, if none is decoding and every running episode (or ``size``) waits."""
        if self._running or not self._waiting:
            return []
        if len(self._waiting) < min(self.size, max(1, self._episodes)):
            return []
        batch, self._waiting = self._waiting[: self.size], self._waiting[self.size :]
        self._running = True
        return batch

    def _decode(self, batch: list[_Pending]) -> None:
        texts: list[str] = []
        failure: BaseException | None = None
        try:
            texts = self.backend.generate_batch([p.request for p in batch])
        except BaseException as exc:  # every caller in the batch gets it, raised in its own thread
            failure = exc
        with self._lock:
            for i, pending in enumerate(batch):
                if failure is None:
                    pending.text = texts[i]
                else:
                    pending.error = failure
            self.batches.append(len(batch))
            self._running = False
            self._lock.notify_all()
