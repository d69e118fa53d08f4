"""orchzip's runtime shim: what an orchestration's main.py imports.

It ships inside every zip orchzip builds and runs on Python 3.10 with only pyarrow and numpy
at import time; a connector's library (duckdb, google-cloud-bigquery) or a model runtime
(onnxruntime) is imported only when that connector or model is used.

    import orchzip_shim

    task = orchzip_shim.current_task()
    source = task.connection(task.args.get("input_connection", "inputs")).source()
    sink = task.connection("results").sink(mode="overwrite", rename=lambda c: c.replace(".", "_"))
    stats = orchzip_shim.run(source, task.pipeline("houseprice"), sink, batch_size=10_000)
    print(stats.summary())
"""

from .context import Connection, TaskContext, current_task
from .errors import OrchzipError
from .loop import DEFAULT_BATCH_SIZE, RunStats, run

__all__ = [
    "Connection",
    "TaskContext",
    "current_task",
    "run",
    "RunStats",
    "DEFAULT_BATCH_SIZE",
    "OrchzipError",
]
