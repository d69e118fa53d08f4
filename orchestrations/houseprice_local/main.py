"""House prices, embedded: read houses from a DuckDB table, infer, write the results.

The Wallaroo BigQuery tutorial's job on embedded parts. Task args (all optional):
  input_connection   connection to read          (default "houseprice_inputs")
  output_connection  connection to write         (default "houseprice_results")
  pipeline           pipeline to infer with      (default "houseprice")
  mode               "overwrite" or "append"     (default "overwrite")
  batch_size         rows per batch              (default 100000)
"""

import orchzip_shim

task = orchzip_shim.current_task()
args = task.args

source = task.connection(args.get("input_connection", "houseprice_inputs")).source()
pipeline = task.pipeline(args.get("pipeline", "houseprice"))
sink = task.connection(args.get("output_connection", "houseprice_results")).sink(
    mode=args.get("mode", "overwrite"),
    # Wallaroo names result columns in.tensor / out.variable; tables want in_tensor / out_variable.
    rename=lambda column: column.replace(".", "_"),
)

stats = orchzip_shim.run(source, pipeline, sink, batch_size=int(args.get("batch_size", orchzip_shim.DEFAULT_BATCH_SIZE)))
print(stats.summary())
