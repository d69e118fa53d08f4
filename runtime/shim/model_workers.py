"""Non-ONNX pipeline steps, each run by a long-lived worker process in the model's own environment.

A :class:`WorkerStep` starts ``<model env's python> <model_worker folder>`` once, sends it the
model spec, waits until the model is loaded, then hands it one Arrow record batch at a time
over the worker's stdin and reads the answer from its stdout (the frames of
``model_worker/protocol.py``). So a heavy model's packages never enter the task's process, and
memory holds one batch and its answer per step however long the input.

Every wait has a deadline: loading (``start_timeout``) and each batch (``timeout``). A model
that raises gives one line naming the model and the rows; a worker that exits, is killed or
overruns its deadline is stopped and reported the same way, and the next batch starts a fresh
worker. Workers die with the process that started them: the worker watches its parent's pid,
asks Linux for ``PDEATHSIG`` when it was started from the main thread (the signal follows the
starting *thread*), and ends when its stdin closes; a step that is garbage-collected or left
open at exit kills its worker.

:class:`WorkerPool` runs ``size`` workers of one step for ``parallel_infer``: batches go to
whichever worker is free, answers come back in input order, and a failed batch is reported as
its exception in its place while the others go on.

Runs on Python 3.10 with pyarrow and numpy only: it is imported inside task processes.
"""

import base64
import collections
import concurrent.futures
import importlib.util
import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
import weakref

import pyarrow as pa

from .errors import BadInput, ConfigError, ModelError, OrchzipError

__all__ = ["WorkerStep", "WorkerPool", "make_step", "worker_dir", "decode_schema", "encode_schema"]

WORKER_ENV = "ORCHZIP_MODEL_WORKER"  # the model_worker folder; the runner sets it for tasks
TIMEOUT_ENV = "ORCHZIP_MODEL_TIMEOUT"  # seconds a batch may take (default below)
DEFAULT_START_TIMEOUT = 300.0
DEFAULT_TIMEOUT = 600.0
CLOSE_GRACE_SECONDS = 5.0
STDERR_TAIL_LINES = 20
_CHUNK = 1 << 20


def make_step(spec, name=None, **options):
    """The step that runs ``spec``: an ``OnnxModel`` for ONNX, a :class:`WorkerStep` otherwise."""
    if (spec.get("framework") or "onnx") == "onnx":
        from .models import onnx_step
        return onnx_step(spec, name=name)
    return WorkerStep(spec, name=name, **options)


def worker_dir():
    """The model_worker folder: ``$ORCHZIP_MODEL_WORKER``, else the one of the installed orchzip."""
    found = os.environ.get(WORKER_ENV)
    if not found:
        try:
            module = importlib.util.find_spec("orchzip.runtime.model_worker")
        except (ImportError, ValueError):
            module = None
        found = os.path.dirname(module.origin) if module is not None and module.origin else None
    if not found or not os.path.isfile(os.path.join(found, "__main__.py")):
        raise ConfigError(
            f"cannot find orchzip's model worker (${WORKER_ENV} is {os.environ.get(WORKER_ENV)!r}); "
            f"run the task with orchzip run, which sets it"
        )
    return found


_PROTOCOLS = {}


def _protocol(folder):
    """``model_worker/protocol.py``, loaded by path: the one definition both sides use."""
    if folder not in _PROTOCOLS:
        spec = importlib.util.spec_from_file_location("_orchzip_worker_protocol", os.path.join(folder, "protocol.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _PROTOCOLS[folder] = module
    return _PROTOCOLS[folder]


def decode_schema(value):
    """A ``pa.Schema`` from the spec's base64 text (or a schema, or None)."""
    if value is None or isinstance(value, pa.Schema):
        return value
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(value)))


def encode_schema(schema):
    """The spec's form of a schema: base64 of ``schema.serialize()`` (as the wallaroo SDK sends it)."""
    if schema is None or isinstance(schema, str):
        return schema
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def _rows(row_offset, n):
    return f"row {row_offset}" if n == 1 else f"rows {row_offset}..{row_offset + n - 1}"


class WorkerStep:
    """One non-ONNX step; ``process(batch, row_offset)`` returns the model's outputs as a batch.

    :param spec: the model spec (``framework``, ``path``, ``python``, ``input_schema``,
        ``output_schema``, ``name``, ...).
    :param name: the name errors use (default: the spec's name).
    :param timeout: seconds one batch may take (default ``$ORCHZIP_MODEL_TIMEOUT`` or 600).
    :param start_timeout: seconds loading the model may take (default 300).
    :param log: called with each line the model prints (default: written to stderr).
    """

    def __init__(self, spec, name=None, timeout=None, start_timeout=None, log=None):
        self.spec = dict(spec)
        self.name = name or spec.get("name") or os.path.basename(str(spec.get("path", "model")))
        self.timeout = float(timeout or os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT)
        self.start_timeout = float(start_timeout or DEFAULT_START_TIMEOUT)
        self.input_schema = decode_schema(spec.get("input_schema"))
        self.output_schema = decode_schema(spec.get("output_schema"))
        self._log = log or _to_stderr
        self._lock = threading.Lock()
        self._process = None
        self._tail = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._drain = None
        self._finalizer = None
        self.worker_info = None

    def __repr__(self):
        return f"WorkerStep({self.name!r}, framework={self.spec.get('framework')!r})"

    # -- the public surface -------------------------------------------------------------------

    def start(self):
        """Start the worker and load the model now (``process`` does it on first use)."""
        with self._lock:
            self._ensure_started()
        return self

    def process(self, batch, row_offset=0):
        """The model's answer for ``batch``: a record batch of the output schema, one row per input row.

        :param row_offset: the number of the batch's first row, for error messages.
        :raises BadInput: the rows do not fit the model's input schema.
        :raises ModelError: the model failed, answered outside its output schema, or its worker
            died or overran its deadline.
        """
        with self._lock:
            batch = self._conform(batch, row_offset)
            if batch.num_rows == 0 and self.output_schema is not None:
                return pa.RecordBatch.from_pylist([], schema=self.output_schema)
            self._ensure_started()
            payload = _ipc_bytes(batch)
            deadline = time.monotonic() + self.timeout
            where = _rows(row_offset, batch.num_rows)
            self._send(self._proto.BATCH, payload, deadline, where)
            kind, answer = self._receive(deadline, where)
            if kind == self._proto.RESULT:
                return pa.ipc.open_stream(pa.py_buffer(answer)).read_next_batch()
            raise self._error_from(answer, where)

    def close(self):
        """Ask the worker to stop, then kill it if it has not within a few seconds.

        With a batch in flight on another thread (a caller that gave up waiting for it), the
        worker is killed at once: that batch fails now instead of running on to its deadline.
        """
        if not self._lock.acquire(blocking=False):
            process = self._process
            if process is not None and process.poll() is None:
                process.kill()
            if not self._lock.acquire(timeout=2 * CLOSE_GRACE_SECONDS):
                return
        try:
            self._stop(graceful=True)
        finally:
            self._lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- input ---------------------------------------------------------------------------------

    def _conform(self, batch, row_offset):
        """The batch with exactly the input schema's columns, cast to its types (one line if not)."""
        if isinstance(batch, pa.Table):
            batch = batch.combine_chunks().to_batches()[0] if batch.num_rows else pa.RecordBatch.from_pylist(
                [], schema=batch.schema)
        schema = self.input_schema
        if schema is None:
            return batch
        names = batch.schema.names
        columns = []
        for field in schema:
            if field.name not in names:
                raise BadInput(
                    f"model {self.name!r} needs column {field.name!r} ({field.type}); the rows have "
                    f"{', '.join(names) or 'no columns'} (input schema: {_schema_text(schema)})")
            column = batch.column(names.index(field.name))
            if column.type != field.type:
                try:
                    column = column.cast(field.type, safe=True)
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
                    raise BadInput(
                        f"column {field.name!r} of {_rows(row_offset, batch.num_rows)} has type {column.type}; "
                        f"model {self.name!r} needs {field.type}: {_first_line(err)}") from None
            columns.append(column)
        return pa.RecordBatch.from_arrays(columns, schema=schema)

    # -- the worker process --------------------------------------------------------------------

    def _ensure_started(self):
        if self._process is not None and self._process.poll() is None:
            return
        self._stop(graceful=False)
        folder = worker_dir()
        self._proto = _protocol(folder)
        python = self.spec.get("python") or sys.executable
        if not os.path.exists(python):
            raise ConfigError(
                f"the environment of model {self.name!r} is gone ({python} does not exist); "
                f"upload the model again to rebuild it")
        self._tail.clear()
        try:
            process = subprocess.Popen(
                [python, folder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                bufsize=0, env=_worker_env(), close_fds=True)
        except OSError as err:
            raise ConfigError(f"cannot start the worker of model {self.name!r} with {python}: {err}") from None
        self._process = process
        self._finalizer = weakref.finalize(self, _kill, process)
        for stream in (process.stdin, process.stdout):
            _widen_pipe(stream.fileno())
        self._drain = threading.Thread(target=_drain, args=(process.stderr, self._tail, self._log),
                                       name=f"orchzip-model-{self.name}-stderr", daemon=True)
        self._drain.start()
        os.set_blocking(process.stdin.fileno(), False)
        deadline = time.monotonic() + self.start_timeout
        where = "loading"
        spec = {k: v for k, v in self.spec.items() if isinstance(v, (str, int, float, bool, type(None)))}
        self._send(self._proto.SPEC, json.dumps(spec).encode("utf-8"), deadline, where)
        kind, answer = self._receive(deadline, where)
        if kind != self._proto.READY:
            error = self._error_from(answer, where)
            self._stop(graceful=False)
            raise error
        self.worker_info = json.loads(answer.decode("utf-8"))
        if self.worker_info.get("protocol") != self._proto.PROTOCOL:
            self._stop(graceful=False)
            raise ModelError(f"the worker of model {self.name!r} speaks protocol {self.worker_info.get('protocol')}, "
                             f"not {self._proto.PROTOCOL}; reinstall orchzip")

    def _stop(self, graceful):
        process, self._process = self._process, None
        if process is None:
            return
        if graceful and process.poll() is None:
            try:
                os.set_blocking(process.stdin.fileno(), True)
                process.stdin.write(self._proto.header(self._proto.QUIT, 0))
            except (OSError, ValueError):
                pass
        for stream in (process.stdin,):
            try:
                stream.close()
            except OSError:
                pass
        try:
            process.wait(timeout=CLOSE_GRACE_SECONDS if graceful else 0.5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=CLOSE_GRACE_SECONDS)
        if self._drain is not None:
            self._drain.join(timeout=1.0)
        process.stdout.close()
        if self._finalizer is not None:
            self._finalizer.detach()

    # -- frames with deadlines -----------------------------------------------------------------

    def _send(self, kind, payload, deadline, where):
        fd = self._process.stdin.fileno()
        head = self._proto.header(kind, len(payload))
        # A small frame goes in one write: one wake-up of the worker instead of two.
        parts = (head + bytes(payload),) if len(payload) < _CHUNK else (head, payload)
        for part in parts:
            view, sent = memoryview(part).cast("B"), 0
            while sent < len(view):
                self._wait(fd, deadline, where, write=True)
                try:
                    sent += os.write(fd, view[sent:sent + _CHUNK])
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    raise self._died(where) from None

    def _receive(self, deadline, where):
        head = self._read_exact(self._proto.HEADER.size, deadline, where)
        kind, length = self._proto.parse_header(bytes(head))
        return kind, self._read_exact(length, deadline, where)

    def _read_exact(self, n, deadline, where):
        buffer, got = bytearray(n), 0
        view = memoryview(buffer)
        stream = self._process.stdout
        while got < n:
            self._wait(stream.fileno(), deadline, where, write=False)
            count = stream.readinto(view[got:got + _CHUNK])
            if not count:
                raise self._died(where)
            got += count
        return buffer

    def _wait(self, fd, deadline, where, write):
        remaining = deadline - time.monotonic()
        ready = select.select([], [fd], [], max(remaining, 0))[1] if write else \
            select.select([fd], [], [], max(remaining, 0))[0]
        if not ready:
            limit = self.start_timeout if where == "loading" else self.timeout
            self._stop(graceful=False)
            what = "did not load" if where == "loading" else f"did not answer {where}"
            raise ModelError(f"model {self.name!r} {what} within {limit:g} s; its worker was stopped "
                             f"(a longer limit: ${TIMEOUT_ENV} seconds)")

    # -- errors --------------------------------------------------------------------------------

    def _error_from(self, answer, where):
        try:
            error = json.loads(bytes(answer).decode("utf-8"))
        except ValueError:
            error = {"kind": "protocol", "message": "an unreadable answer"}
        message = error.get("message", "")
        if error.get("kind") == "load":
            return ModelError(f"cannot load model {self.name!r} ({self.spec.get('framework')}, "
                              f"{self.spec.get('path')}): {message}")
        if error.get("kind") == "output":
            return ModelError(f"model {self.name!r} answered {where} outside its output schema: {message}")
        return ModelError(f"model {self.name!r} failed on {where}: {message}")

    def _died(self, where):
        process = self._process
        code = None
        if process is not None:
            try:
                code = process.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                pass
        if self._drain is not None:
            self._drain.join(timeout=1.0)
        self._stop(graceful=False)
        if code is not None and code < 0:
            how = f"was killed by {_signal_name(-code)}"
        else:
            how = f"exited with code {code}" if code is not None else "closed its output"
        last = next((line for line in reversed(self._tail) if line.strip()), "")
        during = "while loading" if where == "loading" else f"on {where}"
        return ModelError(f"model {self.name!r} stopped {during}: its worker {how}"
                          + (f"; its last output: {last.strip()}" if last else ""))


class WorkerPool:
    """``size`` workers of one step, for ``parallel_infer``.

    ``imap(batches)`` yields one answer per batch, in the batches' order, with at most
    ``2 * size`` batches in flight; a batch that fails (after ``retries`` more tries) yields its
    :class:`OrchzipError` in its place and the others go on. ``map`` is ``list(imap(...))``.
    """

    def __init__(self, spec, size, **step_options):
        if int(size) < 1:
            raise ConfigError(f"a worker pool needs at least one worker, not {size}")
        self.size = int(size)
        self.steps = [WorkerStep(spec, **step_options) for _ in range(self.size)]
        self._free = queue.Queue()
        for step in self.steps:
            self._free.put(step)
        self._executor = concurrent.futures.ThreadPoolExecutor(self.size, thread_name_prefix="orchzip-pool")

    def imap(self, batches, row_offset=0, retries=0):
        pending = collections.deque()
        for batch in batches:
            pending.append(self._executor.submit(self._run, batch, row_offset, retries))
            row_offset += batch.num_rows
            while len(pending) >= 2 * self.size:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def map(self, batches, row_offset=0, retries=0):
        return list(self.imap(batches, row_offset, retries))

    def _run(self, batch, row_offset, retries):
        step = self._free.get()
        try:
            for attempt in range(int(retries) + 1):
                try:
                    return step.process(batch, row_offset)
                except BadInput as err:
                    return err  # the same rows fail again however often they are tried
                except OrchzipError as err:
                    if attempt == retries:
                        return err
        finally:
            self._free.put(step)

    def close(self):
        self._executor.shutdown(wait=True)
        for step in self.steps:
            step.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# -- helpers ---------------------------------------------------------------------------------

def _worker_env():
    """orchzip's environment without what would put the task's packages into the model's."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")}
    env["ORCHZIP_WORKER_PARENT"] = str(os.getpid())
    # PDEATHSIG fires when the starting *thread* ends: ask for it only from the main thread.
    env["ORCHZIP_WORKER_PDEATHSIG"] = "1" if threading.current_thread() is threading.main_thread() else "0"
    return env


F_SETPIPE_SZ = 1031  # Linux
PIPE_BYTES = 1 << 20


def _widen_pipe(fd):
    """A 1 MiB pipe instead of 64 KiB: a batch crosses in a few writes, not dozens of wake-ups."""
    if sys.platform.startswith("linux"):
        try:
            import fcntl
            fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass  # over /proc/sys/fs/pipe-max-size: the default size still works


def _ipc_bytes(batch):
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


def _drain(stream, tail, log):
    """Forward the model's prints line by line, keeping the last few for error messages."""
    try:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            tail.append(line)
            try:
                log(line)
            except Exception:  # a broken log must not stop the draining, or the worker blocks
                pass
    except (OSError, ValueError):
        pass
    finally:
        try:
            stream.close()
        except OSError:
            pass


def _to_stderr(line):
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _kill(process):
    if process.poll() is None:
        process.kill()
        try:
            process.wait(timeout=CLOSE_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            pass


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _schema_text(schema):
    return ", ".join(f"{field.name}: {field.type}" for field in schema)


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
