"""Progress events from a task to the local runner, one JSON object per line.

The runner sets ``ORCHZIP_EVENTS`` to a file in the run's directory and reads it to show
progress and record row counts. Outside a local run (on Wallaroo) nothing is written.
"""

import json
import os

EVENTS_ENV = "ORCHZIP_EVENTS"


class EventWriter:
    def __init__(self, path=None):
        path = path if path is not None else os.environ.get(EVENTS_ENV)
        self._fh = open(path, "a", encoding="utf-8") if path else None

    def emit(self, event, **fields):
        if self._fh is None:
            return
        fields["event"] = event
        self._fh.write(json.dumps(fields, default=str) + "\n")
        self._fh.flush()

    def close(self):
        if self._fh is not None:
            self._fh.close()
            self._fh = None
