"""The read -> infer -> write loop: Arrow record batches from a source, through a model,
into a sink, a few batches in memory at a time; the sink commits only when every batch is in.

Reading, inferring and writing overlap: a reader thread fetches the next batch and a writer
thread writes the previous result while the model runs (duckdb, pyarrow and onnxruntime
release the GIL while they work). Bounded queues between the stages keep memory to a few
batches however big the table is.
"""

import queue
import threading
import time

from .errors import ConfigError
from .events import EventWriter

__all__ = ["RunStats", "run", "DEFAULT_BATCH_SIZE"]

# Rows per batch unless the caller says: 100k rows (about 15 MB of house rows) took 4% less CPU
# than 10k for 1M rows, for about 90 MB more at peak (a few batches are in flight).
DEFAULT_BATCH_SIZE = 100_000
QUEUE_DEPTH = 2  # batches waiting between two stages
_END = object()


class RunStats:
    """Counts of one loop: rows read, inferred and written, batches, seconds."""

    def __init__(self):
        self.rows_read = 0
        self.rows_inferred = 0
        self.rows_written = 0
        self.batches = 0
        self.seconds = 0.0

    def as_dict(self):
        return dict(vars(self))

    def summary(self):
        rate = self.rows_read / self.seconds if self.seconds else 0.0
        return (
            f"rows read: {self.rows_read}, inferred: {self.rows_inferred}, "
            f"written: {self.rows_written}, batches: {self.batches}, "
            f"seconds: {self.seconds:.2f} ({rate:,.0f} rows/s)"
        )

    def __repr__(self):
        return f"RunStats({self.summary()})"


class _Stage(threading.Thread):
    """A daemon thread that keeps the first exception its work raised and stops the loop."""

    def __init__(self, name, work, stop):
        super().__init__(name=name, daemon=True)
        self._work, self._stop_event = work, stop
        self.error = None

    def run(self):
        try:
            self._work()
        except BaseException as err:  # the main thread re-raises it
            self.error = err
            self._stop_event.set()


def _put(q, item, stop):
    """Put ``item`` unless the loop is stopping; True when it was queued."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q, stop):
    """The next item, or ``_END`` when the loop is stopping."""
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return _END


def run(source, model, sink, batch_size=DEFAULT_BATCH_SIZE, on_batch=None):
    """Read ``source`` in batches, infer each with ``model``, write each to ``sink``.

    The sink commits after the last batch; any error aborts it, so the target is either
    unchanged or holds every result. Returns :class:`RunStats`.

    :param source: has ``batches(batch_size)`` yielding ``pyarrow.RecordBatch``.
    :param model: has ``infer_batch(batch, row_offset)`` returning a result batch.
    :param sink: a :class:`orchzip_shim.connectors.Sink`.
    :param batch_size: rows per batch; with the queue depth it bounds the memory held.
    :param on_batch: optional callable given the :class:`RunStats` after each batch is
        written (called from the writing thread; an exception it raises fails the run).
    """
    try:
        batch_size = int(batch_size)
    except (TypeError, ValueError):
        batch_size = 0
    if batch_size < 1:
        raise ConfigError(f"batch size must be a positive number of rows, not {batch_size!r}")
    stats, events = RunStats(), EventWriter()
    started = time.perf_counter()
    inbox, outbox = queue.Queue(QUEUE_DEPTH), queue.Queue(QUEUE_DEPTH)
    stop = threading.Event()

    def read():
        for batch in source.batches(batch_size):
            if not _put(inbox, batch, stop):
                return
        _put(inbox, _END, stop)

    def write():
        while True:
            result = _get(outbox, stop)
            if result is _END:
                return
            sink.write(result)
            stats.rows_written += result.num_rows
            stats.batches += 1
            stats.seconds = time.perf_counter() - started
            events.emit("batch", **stats.as_dict())
            if on_batch is not None:
                on_batch(stats)

    reader, writer = _Stage("orchzip-read", read, stop), _Stage("orchzip-write", write, stop)
    try:
        with sink:  # commits when the block succeeds, aborts when anything raised
            reader.start()
            writer.start()
            try:
                _infer_all(model, inbox, outbox, stop, stats)
                writer.join()
            finally:
                stop.set()
                writer.join()  # never leave the block while the writer still writes
                reader.join()
            for stage in (reader, writer):
                if stage.error is not None:
                    raise stage.error
        stats.seconds = time.perf_counter() - started
        events.emit("done", **stats.as_dict())
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
        events.close()
    return stats


def _infer_all(model, inbox, outbox, stop, stats):
    """The model's stage, on the calling thread; returns early when another stage failed."""
    while True:
        batch = _get(inbox, stop)
        if batch is _END:
            break
        stats.rows_read += batch.num_rows
        result = model.infer_batch(batch, row_offset=stats.rows_read - batch.num_rows)
        stats.rows_inferred += result.num_rows
        if not _put(outbox, result, stop):
            return
    _put(outbox, _END, stop)
