"""The quickstart's embedded setup: example inputs in a DuckDB file, connections, a pipeline.

`orchzip quickstart` calls :func:`prepare`, builds ``orchestrations/houseprice_local`` and
runs it as a run-once task; :func:`first_predictions` reads back what the run wrote.
"""

import os

from orchzip.errors import ConfigError

__all__ = ["repo_root", "prepare", "first_predictions", "INPUTS", "RESULTS", "PIPELINE"]

INPUTS, RESULTS, PIPELINE = "houseprice_inputs", "houseprice_results", "houseprice"
INPUT_TABLE, RESULT_TABLE = "house_inputs", "house_results"


def repo_root():
    """The orchzip clone this package runs from (the quickstart's example files live there)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isdir(os.path.join(root, "orchestrations", "houseprice_local")):
        raise ConfigError(
            "the quickstart needs orchzip's repository (orchestrations/ and examples/); "
            "install orchzip from a clone with: pip install -e ."
        )
    return root


def prepare(store, model=None):
    """Load the example inputs and register the quickstart's connections and pipeline.

    :param model: an ONNX model to use instead of the example one (same interface).
    :returns: the path of the quickstart's DuckDB file.
    """
    import duckdb

    root = repo_root()
    inputs = os.path.join(root, "examples", "houseprice", "inputs.parquet")
    model = os.path.abspath(model or os.path.join(root, "examples", "houseprice", "model.onnx"))
    if not os.path.isfile(model):
        raise ConfigError(f"model file {model} does not exist; give the path of an .onnx file")
    database = os.path.join(store.state_dir, "quickstart.duckdb")
    with duckdb.connect(database) as db:
        db.execute(f"CREATE OR REPLACE TABLE {INPUT_TABLE} AS SELECT tensor FROM read_parquet(?)", [inputs])
        db.execute(f"DROP TABLE IF EXISTS {RESULT_TABLE}")
    for name, table in ((INPUTS, INPUT_TABLE), (RESULTS, RESULT_TABLE)):
        if name in {c["name"] for c in store.list_connections()}:
            store.delete_connection(name)
        store.create_connection(name, "DUCKDB", {"path": database, "table": table})
    store.create_pipeline(PIPELINE, model, replace=True)
    return database


def first_predictions(database, limit=5):
    """The first ``limit`` predictions the quickstart's run wrote, as (features, price) pairs."""
    import duckdb

    with duckdb.connect(database, read_only=True) as db:
        rows = db.execute(
            f"SELECT in_tensor, out_variable[1] FROM {RESULT_TABLE} LIMIT {int(limit)}"
        ).fetchall()
    return rows
