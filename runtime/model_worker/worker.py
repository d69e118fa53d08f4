"""The worker's main loop: load the model once, then answer one batch at a time.

Its stdout carries only frames: the model's own ``print`` calls go to stderr (fd 1 is pointed
at fd 2 once the protocol has its own copy), which the parent forwards to its log. Its stdin is
read only by the loop (fd 0 becomes /dev/null for the model). The worker ends when its stdin
closes, when it receives ``QUIT``, or when its parent process is gone (a watchdog thread sees
the parent change, and on Linux the kernel sends SIGKILL when ``PDEATHSIG`` was asked for), so
a killed task or server never leaves a model process behind.
"""

import base64
import json
import os
import signal
import sys
import threading
import time
import traceback

import numpy as np
import pyarrow as pa

from . import loaders, protocol
from .loaders import ModelLoadError
from .arrays import OutputMismatch, arrays_to_batch, batch_to_arrays

__all__ = ["main"]

STANDINS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standins")
PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 0.2
EXIT_LOAD_FAILED = 3


def main():
    inp, out = _claim_stdio()
    _tie_to_parent()
    # After the environment's own packages: a model environment that installed the real
    # `mac` (it ships inside the wallaroo wheel) keeps it; every other one gets ours.
    sys.path.append(STANDINS)
    kind, payload = _read(inp)
    if kind != protocol.SPEC:
        return 0
    spec = json.loads(payload.decode("utf-8"))
    try:
        model = loaders.load(spec["framework"], spec["path"], spec)
        output_schema = _schema(spec.get("output_schema"))
    except BaseException as err:  # a model's import may call sys.exit(): still one line back
        _send_error(out, "load", _describe(err, spec))
        return EXIT_LOAD_FAILED
    _send(out, protocol.READY, json.dumps({"protocol": protocol.PROTOCOL, "pid": os.getpid(),
                                           "python": "%d.%d.%d" % sys.version_info[:3]}).encode("utf-8"))
    while True:
        kind, payload = _read(inp)
        if kind is None or kind == protocol.QUIT:
            return 0
        if kind != protocol.BATCH:
            _send_error(out, "protocol", f"unexpected frame {kind!r}")
            return 4
        _answer(out, model, output_schema, payload, spec)


def _answer(out, model, output_schema, payload, spec):
    batch = pa.ipc.open_stream(pa.py_buffer(payload)).read_next_batch()
    try:
        result = model(batch_to_arrays(batch))
    except Exception as err:  # the model's own failure; SystemExit ends the worker as it asked
        _send_error(out, "model", _describe(err, spec))
        return
    try:
        answer = arrays_to_batch(result, output_schema or _infer_schema(result), batch.num_rows)
    except OutputMismatch as err:
        _send_error(out, "output", str(err))
        return
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, answer.schema) as writer:
        writer.write_batch(answer)
    _send(out, protocol.RESULT, sink.getvalue())


def _schema(encoded):
    if not encoded:
        return None
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(encoded)))


def _infer_schema(result):
    """A schema for a model uploaded without an output schema: 2-D arrays become lists."""
    if not isinstance(result, dict):
        return pa.schema([])
    fields = []
    for name, value in result.items():
        data = np.asarray(value)
        typ = pa.array(data.reshape(-1)[:0]).type if data.dtype != object else pa.string()
        for _ in range(max(data.ndim - 1, 0)):
            typ = pa.list_(typ)
        fields.append(pa.field(name, typ))
    return pa.schema(fields)


# -- errors as one line ---------------------------------------------------------------------

def _describe(err, spec):
    """``ValueError: bad value (forecast.py, line 12, in process_data)``: where in the model it failed."""
    text = str(err).strip()
    if isinstance(err, ModelLoadError):
        return text
    line = f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__
    if isinstance(err, SystemExit):
        line = f"the model called sys.exit({err.code!r})"
    frame = _model_frame(err, spec.get("path") or "")
    if frame is not None:
        line += f" ({os.path.basename(frame.filename)}, line {frame.lineno}, in {frame.name})"
    return line


def _model_frame(err, model_path):
    root = os.path.realpath(model_path if os.path.isdir(model_path) else os.path.dirname(model_path))
    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if os.path.realpath(f.filename).startswith(root + os.sep)]
    return ours[-1] if ours else None


# -- frames ---------------------------------------------------------------------------------

def _claim_stdio():
    """Keep fds 0 and 1 for the protocol; the model's prints go to stderr, its reads see nothing."""
    inp = os.fdopen(os.dup(0), "rb")
    out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return inp, out


def _read(inp):
    head = inp.read(protocol.HEADER.size)
    if len(head) < protocol.HEADER.size:
        return None, b""
    kind, length = protocol.parse_header(head)
    payload = inp.read(length)
    if len(payload) < length:
        return None, b""
    return kind, payload


def _send(out, kind, payload):
    out.write(protocol.header(kind, len(payload)))
    out.write(payload)
    out.flush()


def _send_error(out, kind, message):
    _send(out, protocol.ERROR, json.dumps({"kind": kind, "message": message}).encode("utf-8"))


# -- dying with the parent ------------------------------------------------------------------

def _tie_to_parent():
    parent = int(os.environ.get("ORCHZIP_WORKER_PARENT") or 0)
    if os.environ.get("ORCHZIP_WORKER_PDEATHSIG") == "1" and sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still applies
    if parent and os.getppid() != parent:
        os._exit(1)  # the parent died before we got here
    if parent:
        threading.Thread(target=_watch, args=(parent,), name="orchzip-parent-watch", daemon=True).start()


def _watch(parent):
    # PDEATHSIG follows the parent *thread*, and a busy model never reads its closed stdin:
    # polling the parent's pid covers both.
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    os._exit(1)
