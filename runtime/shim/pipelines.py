"""Pipelines of several model steps, chained as Wallaroo chains them.

Each step maps a batch to a batch of its outputs under plain names (``variable``, not
``out.variable``); those columns are the next step's inputs. The result keeps Wallaroo's
shape: ``time``, ``in.*`` of the pipeline's ORIGINAL input, ``out.*`` of the LAST step and the
check count as the targeted release names it (see models.wallaroo_result).

A step is built from its model spec (the dict the task context carries, see
runtime/registry.py): ONNX models run here with onnxruntime; other frameworks run in their
own environment's worker process (model_workers), when this shim has them.
"""

import pyarrow as pa

from .errors import BadInput, ModelError
from .models import DEFAULT_ANOMALY_COLUMN, DEFAULT_TENSOR_COLUMN, OnnxModel, onnx_step, wallaroo_result

__all__ = ["PipelineModel", "local_pipeline", "make_step", "step_label"]


def local_pipeline(name, entry, anomaly_column=None):
    """The model of a local pipeline from its entry in the task context.

    A pipeline of one ONNX step is that model itself (the plain loop's fast path); others
    chain their steps. An entry without ``steps`` is a one-file pipeline (``model``).
    """
    steps = entry.get("steps")
    if not steps or (len(steps) == 1 and (steps[0].get("framework") or "onnx") == "onnx"):
        step = steps[0] if steps else entry
        return onnx_step(dict(step, tensor_column=step.get("tensor_column", entry.get("tensor_column"))),
                         name=name, anomaly_column=anomaly_column)
    return PipelineModel(steps, name=name, anomaly_column=anomaly_column)


def step_label(spec):
    version = spec.get("version")
    return f"{spec.get('name')}:{version}" if version else str(spec.get("name"))


def make_step(spec):
    """The runnable step of a model spec: ``process(batch, row_offset) -> batch`` and ``close()``."""
    framework = spec.get("framework") or "onnx"
    if framework == "onnx":
        return onnx_step(spec)
    try:
        from .model_workers import make_step as make_worker_step
    except ImportError:
        raise ModelError(
            f"model {step_label(spec)} is a {framework} model, and this orchzip runs only ONNX steps; "
            f"upgrade orchzip, or make the pipeline of ONNX models"
        ) from None
    return make_worker_step(spec)


class PipelineModel:
    """A pipeline of steps; ``infer_batch(batch, row_offset)`` gives a Wallaroo-shaped result.

    :param specs: the model specs of the steps, in order.
    :param name: the pipeline's name, for errors.
    :param anomaly_column: the results' check-count column (``anomaly.count`` or ``check_failures``).
    :param step_factory: builds a step from a spec (default :func:`make_step`).
    """

    def __init__(self, specs, name=None, anomaly_column=None, step_factory=None):
        if not specs:
            raise ModelError(f"pipeline {name!r} has no model step; add one")
        self.name = name
        self.specs = [dict(s) for s in specs]
        self.anomaly_column = anomaly_column or DEFAULT_ANOMALY_COLUMN
        self.steps = []
        try:
            for spec in self.specs:
                self.steps.append((step_factory or make_step)(spec))
        except BaseException:
            self.close()
            raise

    def __repr__(self):
        return f"PipelineModel({self.name!r}, steps={[step_label(s) for s in self.specs]})"

    def process(self, batch, row_offset=0):
        """The last step's outputs for ``batch``, plain-named."""
        current = batch
        for index, (spec, step) in enumerate(zip(self.specs, self.steps)):
            if index and isinstance(step, OnnxModel):
                current = _as_onnx_input(step, current)
            try:
                current = step.process(current, row_offset)
            except (BadInput, ModelError) as err:
                raise type(err)(f"pipeline {self.name!r} step {index + 1} ({step_label(spec)}): {err}") from None
            if current.num_rows != batch.num_rows:
                raise ModelError(
                    f"pipeline {self.name!r} step {index + 1} ({step_label(spec)}) returned {current.num_rows} "
                    f"rows for {batch.num_rows}; a step must give one output row per input row"
                )
        return current

    def infer_batch(self, batch, row_offset=0):
        outputs = self.process(batch, row_offset)
        return wallaroo_result(batch, dict(zip(outputs.schema.names, outputs.columns)), self.anomaly_column)

    def close(self):
        for step in self.steps:
            close = getattr(step, "close", None)
            if close is not None:
                close()
        self.steps = []


def _as_onnx_input(step, batch):
    """A previous step's single output feeds an ONNX model's single input whatever its name.

    An ONNX model finds its features by column name (``tensor``, its input's name); a chained
    one gets the previous model's output, e.g. ``variable``, so one column is taken as the input.
    """
    names = batch.schema.names
    if step.tensor_column or len(names) != 1 or names[0] in (DEFAULT_TENSOR_COLUMN, step.input_name):
        return batch
    return pa.RecordBatch.from_arrays(batch.columns, names=[step.input_name])  # pyarrow 14 has no rename
