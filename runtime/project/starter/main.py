"""Predict house prices: read houses from a connection, infer them, write the predictions.

Runs unchanged locally (`orchzip run predict`) and as a Wallaroo task. Task args (all optional):
  input_connection   connection to read     (default "houses")
  output_connection  connection to write    (default "predictions")
  pipeline           pipeline to infer with (default "houseprice")
"""

import orchzip_shim

task = orchzip_shim.current_task()
args = task.args

source = task.connection(args.get("input_connection", "houses")).source()
pipeline = task.pipeline(args.get("pipeline", "houseprice"))
sink = task.connection(args.get("output_connection", "predictions")).sink(
    mode="overwrite",
    # Wallaroo names result columns in.bedrooms / out.variable; tables want in_bedrooms / out_variable.
    rename=lambda column: column.replace(".", "_"),
)

stats = orchzip_shim.run(source, pipeline, sink)
print(stats.summary())
