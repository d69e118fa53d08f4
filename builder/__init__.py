"""The ship side: collect, validate and write orchestration zips; inspect them."""
