"""`orchzip quickstart`: build the embedded house-price orchestration and run it once."""

import sys

from orchzip.commands._output import add_json_flag, print_json
from orchzip.commands._running import describe_run
from orchzip.commands.run import EXIT_TASK_FAILED, execute


def cmd_quickstart(args):
    import os

    from orchzip.builder import build
    from orchzip.runtime import quickstart
    from orchzip.runtime.store import Store

    store = Store(args.state_dir)
    database = quickstart.prepare(store, model=args.model)
    built = build(os.path.join(quickstart.repo_root(), "orchestrations", "houseprice_local"), args.out)
    for warning in built.warnings:
        print(f"orchzip: warning: {warning}", file=sys.stderr)
    if not args.json:
        print(f"built {built.zip_path} (sha256 {built.sha256[:12]}...)")
        print(f"running it as a run-once task on {database}")
    args.name = "houseprice_local"
    run = execute(args, built.zip_path, {"batch_size": args.batch_size})
    ok = run["status"] == "success"
    predictions = quickstart.first_predictions(database) if ok else []
    if args.json:
        print_json({"zip": built.zip_path, "run": run, "predictions": [p for _, p in predictions]})
        return 0 if ok else EXIT_TASK_FAILED
    print(describe_run(run))
    if not ok:
        print(f"orchzip: error: {run['error'] or run['status']} (log: {run['log_path']})", file=sys.stderr)
        return EXIT_TASK_FAILED
    print("first 5 predictions:")
    for features, price in predictions:
        shown = ", ".join(f"{v:g}" for v in features[:4])
        print(f"  {price:>12,.0f}  <- [{shown}, ...]")
    print(f"results: table house_results in {database}; logs: orchzip runs logs {run['id'][:8]}")
    return 0


def register(subparsers):
    p = subparsers.add_parser(
        "quickstart", help="build and run the embedded house-price orchestration once",
        description="Load the example houses into a DuckDB file, register the connections "
        "houseprice_inputs / houseprice_results and the pipeline houseprice, build "
        "orchestrations/houseprice_local into a zip and run it as a run-once task.",
    )
    p.add_argument("--model", help="an ONNX model to use instead of the example one, e.g. "
                   "../shared/wallaroo-tutorial-data/rf_model.onnx")
    p.add_argument("--out", default="dist", help="where the zip is written (default: dist)")
    p.add_argument("--batch-size", type=int, default=1000, help="rows per batch (default 1000)")
    p.add_argument("--timeout", type=float, default=600, help="seconds before the run is killed")
    add_json_flag(p)
    p.set_defaults(func=cmd_quickstart)
