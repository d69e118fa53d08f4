"""`orchzip models ...`: models registered by name with versions, the steps of pipelines."""

from orchzip.commands._output import add_json_flag, print_json, print_table
from orchzip.runtime.registry import FRAMEWORKS


def _store(args, create=True):
    from orchzip.runtime.store import Store
    return Store(args.state_dir, create=create)  # create=False: a read that never makes a state


def shown(row, store=None):
    """A model row as commands show it: schemas as ``{column: type}``, the pipelines using it."""
    from orchzip.runtime.model_schemas import decode_schema, schema_to_json
    from orchzip.runtime.registry import pipelines_using
    row = dict(row, input_schema=schema_to_json(decode_schema(row["input_schema"])),
               output_schema=schema_to_json(decode_schema(row["output_schema"])))
    row.pop("requirements", None)
    if store is not None:
        row["pipelines"] = pipelines_using(store, [row["id"]])
    return row


def _progress(line):
    from orchzip.commands._output import env_progress
    env_progress(line if getattr(line, "from_installer", False) else f"orchzip: {line}")


def cmd_upload(args):
    from orchzip.runtime.registry import upload_model
    store = _store(args)
    row = upload_model(store, args.name, args.file, framework=args.framework, input_schema=args.input_schema,
                       output_schema=args.output_schema, requirements=args.requirements,
                       workspace=args.workspace, tensor_column=args.tensor_column,
                       on_progress=None if args.json else _progress, convert_to_onnx=args.convert_to_onnx)
    if args.json:
        print_json(shown(row))
    else:
        print(f"model {row['name']} version {row['version']} ({row['framework']}) -> {row['path']}")


def cmd_list(args):
    from orchzip.runtime.registry import list_models
    store = _store(args, create=False)
    rows = [shown(r, store) for r in list_models(store, args.name)]
    if args.json:
        print_json(rows)
    else:
        print_table([dict(r, workspace=r["workspace_name"] or "", pipelines=",".join(r["pipelines"]),
                          sha256=r["sha256"][:12]) for r in rows],
                    ["name", "version", "framework", "workspace", "pipelines", "sha256", "created_at"])


def cmd_get(args):
    import json
    from orchzip.runtime.registry import get_model, resolve_step
    store = _store(args, create=False)
    row = shown(resolve_step(store, args.name) if args.version is None else get_model(store, args.name, args.version),
                store)
    if args.json:
        print_json(row)
        return
    print(f"{row['name']} version {row['version']} ({row['framework']}, sha256 {row['sha256']})")
    print(f"  file:      {row['path']}")
    print(f"  uploaded:  {row['created_at']} from {row['source_path']}")
    if row.get("converted_from"):
        print(f"  converted: to ONNX from {row['converted_from']} (file sha256 {row['source_sha256']})")
    if row["workspace_name"]:
        print(f"  workspace: {row['workspace_name']}")
    for key in ("input_schema", "output_schema"):
        if row[key]:
            print(f"  {key.replace('_', ' ')}: {json.dumps(row[key])}")
    print(f"  pipelines: {', '.join(row['pipelines']) or '(none)'}")


def cmd_delete(args):
    from orchzip.runtime.registry import delete_model
    rows = delete_model(_store(args), args.name, args.version)
    versions = [str(r["version"]) for r in rows]
    if args.json:
        print_json({"deleted": "model", "name": args.name, "versions": versions})
    else:
        print(f"deleted model {args.name} (version{'s' if len(versions) > 1 else ''} {', '.join(versions)})")


SCHEMA_HELP = ("the model's {} columns as a JSON object of column name to Arrow type, or a file holding one, "
               "e.g. '{{\"tensor\": \"list<float64>\"}}' (types as pyarrow prints them: float32, int64, string, "
               "list<T>, fixed_size_list<T>[N] ...)")


def register(subparsers):
    models = subparsers.add_parser(
        "models", help="models registered by name with versions (the steps of pipelines)",
        description="Models registered by name: each upload checks the model, stores a copy of it in the "
        "state and gives it the next version number. Pipelines chain model versions: "
        "orchzip pipelines create NAME --step MODEL[:VERSION] --step ...",
    )
    sub = models.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("upload", help="check a model and store it as the next version of NAME")
    p.add_argument("name", help="the model's name (DNS-compatible, as on Wallaroo: letters, digits, dashes)")
    p.add_argument("file", help="the model: an .onnx file, a Python model's .py, a BYOP folder or zip, ...")
    p.add_argument("--framework", choices=FRAMEWORKS, default="onnx", help="the model's framework (default: onnx)")
    p.add_argument("--input-schema", metavar="JSON_OR_FILE", help=SCHEMA_HELP.format("input"))
    p.add_argument("--output-schema", metavar="JSON_OR_FILE", help=SCHEMA_HELP.format("output"))
    p.add_argument("--requirements", metavar="FILE", help="requirements.txt of the model's own environment (non-ONNX)")
    p.add_argument("--tensor-column", help="ONNX: the input column holding each row's features (default: tensor)")
    p.add_argument("--workspace", metavar="NAME", help="the workspace the model is in")
    p.add_argument("--convert-to-onnx", action="store_true",
                   help="sklearn/xgboost: store the model converted to ONNX (skl2onnx/onnxmltools, checked "
                        "against the original) and run it as an ONNX step whose results follow the "
                        "output schema, as the native model's do")
    add_json_flag(p)
    p.set_defaults(func=cmd_upload)
    p = sub.add_parser("list", help="list models and their versions")
    p.add_argument("name", nargs="?", help="only the versions of this model")
    add_json_flag(p)
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("get", help="show one model version (default: the newest), with the pipelines using it")
    p.add_argument("name", help="NAME or NAME:VERSION")
    p.add_argument("--version", type=int, help="the version to show (default: the newest)")
    add_json_flag(p)
    p.set_defaults(func=cmd_get)
    p = sub.add_parser("delete", help="delete a model (all versions, or --version); refused while a pipeline uses it")
    p.add_argument("name")
    p.add_argument("--version", type=int, help="delete only this version")
    add_json_flag(p)
    p.set_defaults(func=cmd_delete)
