"""The frames a model worker and its parent exchange over the worker's stdin and stdout.

A frame is one kind byte, an 8-byte big-endian payload length and the payload. The parent
sends ``SPEC`` (JSON: the model spec) once, then ``BATCH`` frames (an Arrow IPC stream holding
one record batch) one at a time, and ``QUIT``; the worker answers ``READY`` (JSON) once the
model is loaded, then one ``RESULT`` (Arrow IPC stream) or ``ERROR`` (JSON ``{"kind",
"message"}``, the message one line) per batch. One batch is in flight at a time, so neither
side ever holds more than one batch and its result.

This file is loaded by path from both sides (the worker runs in the model's own environment,
the parent in a task or in orchzip), so it imports only the standard library.
"""

import struct

__all__ = ["PROTOCOL", "SPEC", "BATCH", "QUIT", "READY", "RESULT", "ERROR", "HEADER", "header", "parse_header"]

PROTOCOL = 1  # bumped when frames change; the worker says which it speaks in READY

SPEC, BATCH, QUIT = b"S", b"B", b"Q"
READY, RESULT, ERROR = b"R", b"O", b"E"

HEADER = struct.Struct(">cQ")


def header(kind, length):
    return HEADER.pack(kind, length)


def parse_header(data):
    """``(kind, length)`` of a frame header (``HEADER.size`` bytes)."""
    return HEADER.unpack(data)
