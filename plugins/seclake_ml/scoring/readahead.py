"""Read the jobs of a batch in background threads, ahead of their consumer and in their order.

The scoring engine reads the next lake objects (download, DuckDB scan and grouping) while the
calling thread scores, explains and writes the current one. Both sides release the GIL for most of
their work (DuckDB, NumPy, pyarrow, S3 transfers), so the reads of several objects and the scoring
overlap. DuckDB scans one row group per thread, and a Security Lake object is often a single row
group: reading two objects at once is what keeps two cores busy.

``workers`` threads each take the next job in order and put the items ``read(job, worker)`` yields
into that job's queue of at most ``depth`` items; the consumer gets all of job 0's items, then job
1's, and so on, whatever the order in which the workers finish. A worker blocks when its job's queue
is full, and takes a new job only up to ``workers`` jobs past the one the consumer is at, so at most
``(workers + 1) * (depth + 1)`` items are held at a time (the consumer's own included), which bounds
the memory.

An exception raised while reading a job is raised in the consumer, after that job's items produced
before it. :meth:`ReadAhead.close` stops the workers early (the consumer failed or stopped): it calls
the optional ``interrupt`` hook, so that a long call returns (e.g. DuckDB's ``interrupt``), closes
each worker's iterator in its own thread (its ``finally`` blocks, such as removing a downloaded file,
run there) and waits for the threads.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

J = TypeVar("J")
T = TypeVar("T")

_END = object()
#: How often a blocked worker or consumer looks at the other side (seconds).
_POLL = 0.1


class ReadAhead(Generic[J, T]):
    """The items of ``read(job, worker)`` for each job of ``jobs``, in order, read by ``workers``
    daemon threads at most ``depth`` items ahead per job and ``workers`` jobs ahead of the consumer
    (``workers`` and ``depth`` >= 1).

    :param interrupt: called by :meth:`close` while a worker still runs, so that a long call
        returns early.
    """

    def __init__(self, jobs: Sequence[J], read: Callable[[J, int], Iterator[T]], *, workers: int = 1,
                 depth: int = 2, name: str = "read-ahead", interrupt: Callable[[], None] | None = None) -> None:
        for label, value in (("workers", workers), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label}: got {value!r}; expected an int >= 1")
        self._jobs = list(jobs)
        self._read = read
        self._queues: list[queue.Queue[tuple[bool, object]]] = [queue.Queue(maxsize=depth) for _ in self._jobs]
        self._next = 0  # the next job nobody reads yet
        self._current = 0  # the job the consumer is at
        self._workers = workers
        self._turn = threading.Condition()
        self._stop = threading.Event()
        self._interrupt = interrupt
        self._threads = [threading.Thread(target=self._work, args=(w,), name=f"{name}-{w}", daemon=True)
                         for w in range(min(workers, max(1, len(self._jobs))))]
        for thread in self._threads:
            thread.start()

    def _take(self) -> int | None:
        """The index of the next job nobody reads yet, once it is at most ``workers`` jobs past the
        consumer's; ``None`` when there is none (or the reading was stopped)."""
        with self._turn:
            while not self._stop.is_set() and self._next > self._current + self._workers:
                self._turn.wait(_POLL)
            if self._stop.is_set() or self._next >= len(self._jobs):
                return None
            self._next += 1
            return self._next - 1

    def _put(self, index: int, entry: tuple[bool, object]) -> bool:
        """Queue ``entry`` for job ``index``; ``False`` when :meth:`close` stopped the reading first."""
        while not self._stop.is_set():
            try:
                self._queues[index].put(entry, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, worker: int) -> None:
        while (index := self._take()) is not None:
            items: Iterator[T] | None = None
            last: tuple[bool, object] = (False, _END)
            try:
                items = iter(self._read(self._jobs[index], worker))
                for item in items:
                    if not self._put(index, (True, item)):
                        return
            except BaseException as exc:  # noqa: BLE001 - handed over and raised in the consumer
                last = (False, exc)
            finally:
                closer = getattr(items, "close", None)
                if closer is not None:
                    try:
                        closer()  # a generator stopped early runs its own clean-up here, in its thread
                    except Exception:  # noqa: BLE001 - clean-up of an abandoned read must not hide the outcome
                        log.exception("closing the reading of job %d failed", index)
            if not self._put(index, last):
                return

    def __iter__(self) -> Iterator[T]:
        for index in range(len(self._jobs)):
            with self._turn:
                self._current = index
                self._turn.notify_all()
            q = self._queues[index]
            while True:
                if self._stop.is_set():
                    return  # closed: nothing more, even what was already read
                try:
                    ok, item = q.get(timeout=_POLL)
                except queue.Empty:
                    if self._stop.is_set():
                        return
                    if not any(t.is_alive() for t in self._threads) and q.empty():
                        raise RuntimeError(f"the reading threads ended before job {index} was read") from None
                    continue
                if ok:
                    yield item  # type: ignore[misc]
                elif item is _END:
                    break
                else:
                    raise item  # type: ignore[misc]

    def close(self) -> None:
        """Stop the workers (if they still run) and wait for their threads to end."""
        self._stop.set()
        with self._turn:
            self._turn.notify_all()
        if self._interrupt is not None and any(t.is_alive() for t in self._threads):
            try:
                self._interrupt()
            except Exception:  # noqa: BLE001 - the stop flag still ends the threads at their next item
                log.debug("read-ahead interrupt failed", exc_info=True)
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> ReadAhead[J, T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
