"""The one bounded wait the tests use: poll until something holds, or fail saying what never came."""

import time


def wait_for(predicate, timeout, what):
    """``predicate()``'s first truthy value, polled every 0.1 s for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
