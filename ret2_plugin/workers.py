"""The one bounded background-worker pattern, used by streaming encoding, `encode`'s prefetch and
the indexing writer.

- `Prefetcher(source, depth=...)`: a daemon thread runs the iterable `source` at most `depth`
  values ahead of the consumer (memory stays flat); iterate it to get the values in order. An
  exception raised by `source` is raised in the consumer, at the point it was reached; `close()`
  (or leaving the `with` block, or abandoning the iteration) stops the thread promptly.
- `BoundedWorker(handle, depth=...)`: the other direction: `submit(value)` hands values to a daemon
  thread that calls `handle(value)` in order, blocking the submitter when `depth` are waiting;
  `close()` waits for the backlog and raises the first exception `handle` raised, if any.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_END = object()
_POLL = 0.1


class Prefetcher(Generic[T]):
    """Values of `source`, produced on a background thread, at most `depth` ahead."""

    def __init__(self, source: Iterable[T], *, depth: int = 2, name: str = "ret2-prefetch") -> None:
        if depth <= 0:
            raise ValueError("depth must be positive")
        self._ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source,), name=name, daemon=True)
        self._thread.start()

    def _put(self, value: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._ready.put(value, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, source: Iterable[T]) -> None:
        try:
            for value in source:
                if not self._put((True, value)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((False, exc))
            return
        self._put(_END)

    def __iter__(self) -> Iterator[T]:
        try:
            while True:
                got = self._get()
                if got is _END:
                    return
                ok, value = got
                if not ok:
                    raise value
                yield value
        finally:
            self.close()

    def _get(self) -> Any:
        while True:
            if self._stop.is_set():
                return _END
            try:
                return self._ready.get(timeout=0.5)
            except queue.Empty:
                if self._stop.is_set():
                    return _END
                if not self._thread.is_alive() and self._ready.empty():
                    raise RuntimeError(f"the {self._thread.name} thread stopped without a result") from None

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BoundedWorker(Generic[T]):
    """Calls `handle(value)` on a background thread for every submitted value, in order."""

    def __init__(self, handle: Callable[[T], None], *, depth: int = 2, name: str = "ret2-worker") -> None:
        if depth <= 0:
            raise ValueError("depth must be positive")
        self._handle = handle
        self._inbox: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._errors: list[BaseException] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (value := self._inbox.get()) is not _END:
            if self._errors:
                continue  # drain: the submitter must never block on a dead worker
            try:
                self._handle(value)
            except BaseException as exc:  # raised by close(), never swallowed
                self._errors.append(exc)

    def submit(self, value: T) -> None:
        if self._closed:
            raise RuntimeError("submit() after close()")
        self._inbox.put(value)

    def close(self) -> None:
        """Wait until every submitted value is handled; raise the first error `handle` raised."""
        if not self._closed:
            self._closed = True
            self._inbox.put(_END)
            self._thread.join()
        if self._errors:
            raise self._errors[0]

    def __enter__(self) -> BoundedWorker[T]:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            self.close()
        except BaseException:
            if exc_type is None:  # never mask the exception already on its way out
                raise
