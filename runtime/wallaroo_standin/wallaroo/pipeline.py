"""Pipelines of local model steps, inferred by the shim in the task's own process.

Steps chain as on Wallaroo: each step's outputs are the next step's inputs (see
orchzip_shim.pipelines); ONNX steps run in the task's process, other frameworks in worker
processes of their own environments.

A pipeline of orchzip's state (``orchzip pipelines create``) starts deployed, as the
tutorials' notebooks deploy a pipeline before its orchestration runs; ``deploy()`` and
``undeploy()`` switch that state for the rest of the process, and ``infer`` on an
undeployed pipeline is refused as on Wallaroo. Results have the shape of the targeted
Wallaroo release (the check count is ``anomaly.count`` or, for 2023 releases,
``check_failures``).
"""

import asyncio
import threading

import pyarrow as pa
from orchzip_shim.errors import BadInput

from ._local import InferenceError, LocalSurface, NotAvailableLocally, not_deployed, state
from .object import DeploymentError

PARALLEL_TIMEOUT = 15  # seconds per batch, the SDK's default

__all__ = ["Pipeline", "Pipelines"]


class Pipelines(list):
    """A list of Pipeline (what ``pipelines_by_name`` and ``list_pipelines`` return)."""


class Pipeline(LocalSurface):
    _surface_name = "wallaroo.Pipeline"

    def __init__(self, record):
        self._record = record

    def id(self):
        return self._record["id"]

    def name(self):
        return self._record["name"]

    def create_time(self):
        return self._record["created_at"]

    def last_update_time(self):
        return self._record["created_at"]

    def workspace(self):
        from .workspace import Workspace
        return Workspace(self._record["workspace"])

    def steps(self):
        return list(self._record["steps"])

    def model_configs(self):
        return list(self._record["steps"])

    def status(self):
        if self._record["deployed"]:
            return {"status": "Running", "details": [], "engines": [], "engine_lbs": [], "sidekicks": []}
        return {"status": f"Pipeline {self.name()} is not deployed"}

    # -- building -----------------------------------------------------------------------
    def add_model_step(self, model_version):
        self._record["steps"].append(_checked_model(model_version))
        return self

    def replace_with_model_step(self, index, model_version):
        self._record["steps"][index] = _checked_model(model_version)
        return self

    def remove_step(self, index):
        del self._record["steps"][index]
        return self

    def clear(self):
        self._record["steps"].clear()
        return self

    # -- deployment ---------------------------------------------------------------------
    def deploy(self, pipeline_name=None, deployment_config=None, wait_for_status=True):
        """Load the pipeline's steps now, as a deployment does; inference then runs through them in order."""
        steps = self._record["steps"]
        if not steps:
            raise DeploymentError(
                f"pipeline {self.name()!r} has no model step to deploy; add one with "
                f"pipeline.add_model_step(model) first"
            )
        state().runner(self.name(), steps)
        self._record["deployed"] = True
        self._record["deployment_config"] = deployment_config
        return self

    def undeploy(self):
        self._record["deployed"] = False
        return self

    # -- inference ----------------------------------------------------------------------
    def infer(self, tensor, timeout=None, dataset=None, dataset_exclude=None, dataset_separator=None):
        """Infer a pandas DataFrame or a pyarrow Table; the result is of the same kind.

        Its columns are Wallaroo's: ``time``, ``in.<column>``, ``out.<output>`` of the last step
        (a list per row) and the check count as the targeted release names it.
        """
        model = self._model("infer")
        table, as_pandas = _as_table(tensor)
        result = _infer_table(model, table)
        return _to_pandas(result) if as_pandas else result

    async def parallel_infer(self, tensor, batch_size=1, timeout=None, num_parallel=None, retries=None,
                             dataset=None, dataset_exclude=None, dataset_separator=None):
        """Infer ``tensor`` in batches of ``batch_size`` rows, ``num_parallel`` at a time, as the SDK does.

        The result is one DataFrame (or Arrow table, for a table) of all rows in order. When some
        batches fail, their rows are empty and an ``error`` column says why (``""`` for rows that
        succeeded); when every batch fails, the result is only the ``error`` column, one row per
        batch. ``timeout`` bounds each batch (default 15 s); a batch that fails is tried again up
        to ``retries`` times (rows a model refuses are not). Up to ``num_parallel`` batches run at
        once: ONNX steps in threads of this process, other steps each in their own worker process
        per parallel lane.
        """
        import pandas as pd
        if tensor is None or not isinstance(tensor, (pd.DataFrame, pa.Table)):
            raise ValueError("tensor must be a pandas DataFrame or a pyarrow Table")
        if batch_size is None or batch_size == 0:
            raise ValueError("batch_size must be a positive integer and cannot be None or 0")
        self._model("parallel_infer")
        table, as_pandas = _as_table(tensor)
        batches = table.to_batches(max_chunksize=batch_size)
        lanes = max(1, int(num_parallel or 1))
        runners = _Lanes(self.name(), self._record["steps"], lanes)
        limit = asyncio.Semaphore(lanes)
        seconds = PARALLEL_TIMEOUT if timeout is None else timeout

        async def one(batch):
            async with limit:
                for attempt in range(max(0, int(retries or 0)) + 1):
                    try:
                        return await asyncio.wait_for(asyncio.to_thread(runners.infer, batch), seconds)
                    except BadInput:
                        raise
                    except Exception:
                        if attempt >= max(0, int(retries or 0)):
                            raise

        try:
            results = await asyncio.gather(*(one(b) for b in batches), return_exceptions=True)
        finally:
            runners.close()
        return _joined(results, [b.num_rows for b in batches], as_pandas)

    def _model(self, call):
        if not self._record["deployed"]:
            raise not_deployed(self.name(), call)
        return state().runner(self.name(), self._record["steps"])

    def infer_from_file(self, filename, data_format=None, timeout=None, **_ignored):
        """Infer an Arrow IPC file (``.arrow``; result: a Table) or pandas-records JSON (a DataFrame)."""
        name = str(filename)
        if name.endswith(".arrow"):
            with pa.memory_map(name) as source:
                return self.infer(pa.ipc.open_file(source).read_all())
        import pandas as pd
        return self.infer(pd.read_json(name, orient="records"))

    def __repr__(self):
        steps = [s.name() for s in self._record["steps"]]
        return (f"Pipeline(name={self.name()!r}, steps={steps}, "
                f"status={self.status()['status']!r}, local=True)")

    __str__ = __repr__


class _Lanes:
    """Runners of a pipeline for parallel_infer: ONNX-only pipelines share the deployed one
    (onnxruntime sessions are thread-safe); pipelines with worker steps get one runner, each
    with its own worker processes, per parallel lane, made when a lane first needs one."""

    def __init__(self, name, steps, size):
        self._name, self._steps = name, list(steps)
        self._shared = all(m.spec().get("framework", "onnx") == "onnx" for m in self._steps)
        self._free, self._made, self._size = [], [], size
        self._lock = threading.Lock()

    def infer(self, batch):
        if self._shared:
            return _infer_table(state().runner(self._name, self._steps), pa.Table.from_batches([batch]))
        runner = self._take()
        try:
            return _infer_table(runner, pa.Table.from_batches([batch]))
        finally:
            with self._lock:  # back only when its work ended, even after a timeout
                self._free.append(runner)

    def _take(self):
        with self._lock:
            if self._free:
                return self._free.pop()
        from orchzip_shim.pipelines import local_pipeline
        runner = local_pipeline(self._name, {"steps": [m.spec() for m in self._steps]}, state().anomaly_column)
        with self._lock:
            self._made.append(runner)
        return runner

    def close(self):
        with self._lock:
            made, self._made, self._free = self._made, [], []
        for runner in made:
            runner.close()


def _checked_model(model_version):
    from .model import Model
    if not isinstance(model_version, Model):
        raise NotAvailableLocally(
            f"a pipeline step of type {type(model_version).__name__} is not available in an "
            f"orchzip local run; add a model from wl.upload_model(...) or wl.get_model(...)"
        )
    return model_version


def _as_table(tensor):
    import pandas as pd
    if isinstance(tensor, pd.DataFrame):
        return pa.Table.from_pandas(tensor, preserve_index=False), True
    if isinstance(tensor, pa.Table):
        return tensor, False
    if isinstance(tensor, pa.RecordBatch):
        return pa.Table.from_batches([tensor]), False
    raise InferenceError(
        f"pipeline.infer got a {type(tensor).__name__}; an orchzip local run infers a "
        f"pandas DataFrame or a pyarrow Table"
    )


def _infer_table(model, table, max_rows=50_000):
    batches = table.to_batches(max_chunksize=max_rows) or [
        pa.RecordBatch.from_pylist([], schema=table.schema)
    ]
    results, offset = [], 0
    for batch in batches:
        results.append(model.infer_batch(batch, row_offset=offset))
        offset += batch.num_rows
    return pa.Table.from_batches(results)


def _error_text(err):
    if isinstance(err, asyncio.TimeoutError):
        return "inference timed out"
    return str(err) or type(err).__name__


def _joined(results, sizes, as_pandas):
    """The batches' results in order, as the SDK joins them (see ``Pipeline.parallel_infer``)."""
    import pandas as pd
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result  # KeyboardInterrupt and the like are not a batch's failure
    sample = next((r for r in results if isinstance(r, pa.Table)), None)
    if sample is None:
        errors = pd.DataFrame({"error": [_error_text(r) for r in results]})
        return errors if as_pandas else pa.Table.from_pandas(errors, preserve_index=False)
    tables, errors = [], []
    for result, size in zip(results, sizes):
        if isinstance(result, pa.Table):
            tables.append(result.cast(sample.schema))
            errors += [""] * size
        else:
            tables.append(pa.table({f.name: pa.nulls(size, f.type) for f in sample.schema}, schema=sample.schema))
            errors += [_error_text(result)] * size
    joined = pa.concat_tables(tables)
    failed = any(errors)
    if not as_pandas:
        return joined.append_column("error", pa.array(errors, pa.string())) if failed else joined
    frame = _to_pandas(joined)
    if failed:
        # The SDK fills a failed batch's rows with "" in every column.
        mask = [bool(e) for e in errors]
        frame = frame.astype(object)
        frame.loc[mask, :] = ""
        frame["error"] = errors
    return frame


def _to_pandas(table):
    """A DataFrame as the SDK gives it: one column at a time, a list column as arrays per row."""
    import pandas as pd
    return pd.DataFrame({name: table.column(name).to_pandas() for name in table.column_names})
