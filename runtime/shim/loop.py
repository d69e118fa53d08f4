"""The read -> infer -> write loop: Arrow record batches from a source, through a model,
into a sink, one batch in memory at a time; the sink commits only when every batch is in."""

import time

from .events import EventWriter

__all__ = ["RunStats", "run", "DEFAULT_BATCH_SIZE"]

DEFAULT_BATCH_SIZE = 10_000


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


def run(source, model, sink, batch_size=DEFAULT_BATCH_SIZE, on_batch=None):
    """Read ``source`` in batches, infer each with ``model``, write each to ``sink``.

    The sink commits after the last batch; any error aborts it, so the target is either
    unchanged or holds every result. Returns :class:`RunStats`.

    :param source: has ``batches(batch_size)`` yielding ``pyarrow.RecordBatch``.
    :param model: has ``infer_batch(batch, row_offset)`` returning a result batch.
    :param sink: a :class:`orchzip_shim.connectors.Sink`.
    :param batch_size: rows per batch; bounds the memory the loop holds.
    :param on_batch: optional callable given the :class:`RunStats` after every batch.
    """
    if int(batch_size) < 1:
        from .errors import ConfigError
        raise ConfigError(f"batch size must be a positive number of rows, not {batch_size!r}")
    stats = RunStats()
    events = EventWriter()
    started = time.perf_counter()
    try:
        with sink:
            for batch in source.batches(int(batch_size)):
                stats.rows_read += batch.num_rows
                result = model.infer_batch(batch, row_offset=stats.rows_read - batch.num_rows)
                stats.rows_inferred += result.num_rows
                sink.write(result)
                stats.rows_written += result.num_rows
                stats.batches += 1
                stats.seconds = time.perf_counter() - started
                events.emit("batch", **stats.as_dict())
                if on_batch is not None:
                    on_batch(stats)
        stats.seconds = time.perf_counter() - started
        events.emit("done", **stats.as_dict())
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
        events.close()
    return stats
