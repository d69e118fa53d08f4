"""The run side around the shim: local state, run-once runner, scheduler, local API server."""
