"""orchzip: build, run locally, schedule and ship Wallaroo ML Workload Orchestrations."""

__version__ = "0.1.0"
