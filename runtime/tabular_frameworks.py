"""scikit-learn and XGBoost models at the door: the file and schema checks Wallaroo makes.

``model_frameworks.check_upload`` runs :data:`CHECKS` for these two frameworks, builds the
model's environment (``model_envs``: scikit-learn / xgboost as Wallaroo's runtime has them) and
loads the model once in a worker, whose loader (``model_worker/loaders/sklearn.py``,
``xgboost.py``) checks the schemas against the model itself: a wrong width, probabilities of a
regressor, an output list of the wrong size are one line at upload, not an error at the first
inference.

What Wallaroo takes, from its SKLearn and XGBoost upload guides, tutorials and SDK: both schemas
are required ("parameter 'input_schema' required for this framework"); a scikit-learn model is
a pickle (joblib files are pickles too); an XGBoost model is a pickle only ("XGB files are not
supported": not ``save_model``'s JSON, UBJSON or old binary).
"""

import base64
import os

from orchzip.errors import ConfigError
from orchzip.runtime import model_envs

__all__ = ["FRAMEWORKS", "CHECKS", "BadModelUpload", "check_file", "check_schemas", "serialize_schema",
           "LOADERS_PARENT", "REQUIREMENTS"]

FRAMEWORKS = ("sklearn", "xgboost")
LABELS = {"sklearn": "scikit-learn", "xgboost": "XGBoost"}
REQUIREMENTS = {framework: model_envs.FRAMEWORK_PACKAGES[framework] for framework in FRAMEWORKS}
# The folder holding the loaders package (the worker and the ONNX converter import from it).
LOADERS_PARENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_worker")
# save_model's own formats: JSON and UBJSON open an object with "{", the old binary has "binf".
XGBOOST_NATIVE_PREFIXES = (b"{", b"binf")


class BadModelUpload(ConfigError):
    """The model file or its schemas are not what Wallaroo takes; the message says what to fix."""


def serialize_schema(schema):
    """The spec's form of a schema: base64 of ``schema.serialize()``; text passes unchanged."""
    if schema is None or isinstance(schema, str):
        return schema
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def check_file(name, framework, path):
    """One pickle file, and for XGBoost not one of ``save_model``'s own formats."""
    label = LABELS[framework]
    if not os.path.isfile(path):
        raise BadModelUpload(f"model {name!r}: {path} is not a file; a {label} model is one pickle file")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if framework == "xgboost" and head.startswith(XGBOOST_NATIVE_PREFIXES):
        raise BadModelUpload(
            f"model {name!r}: {os.path.basename(path)} is in XGBoost's own save_model format, which Wallaroo "
            f"does not take; upload a pickle instead: pickle.dump(model, open('model.pkl', 'wb'))")
    # A pickle of protocol 2 or later starts with PROTO (0x80); joblib.dump writes such a pickle
    # unless asked to compress, and a compressed joblib file is read by joblib at load.
    if not head or (head[:1] != b"\x80" and framework == "xgboost"):
        raise BadModelUpload(f"model {name!r}: {os.path.basename(path)} is not a pickle; save the model "
                             f"with pickle.dump(model, f)")


CHECKS = {framework: (lambda name, path, _fw=framework: check_file(name, _fw, path)) for framework in FRAMEWORKS}


def check_schemas(name, framework, input_schema, output_schema):
    """Both schemas present and of a shape Wallaroo feeds these models; returns them as spec text."""
    from orchzip.runtime.model_worker.loaders import _tabular
    import pyarrow as pa

    for key, value in (("input_schema", input_schema), ("output_schema", output_schema)):
        if value is None:
            raise BadModelUpload(f"model {name!r}: framework {framework} needs {key} (a pyarrow schema), "
                                 f"as Wallaroo does (e.g. {_example(key)})")
    texts = serialize_schema(input_schema), serialize_schema(output_schema)
    try:
        schemas = [pa.ipc.read_schema(pa.py_buffer(base64.b64decode(t))) for t in texts]
    except (ValueError, TypeError, pa.ArrowInvalid):
        raise BadModelUpload(f"model {name!r}: a schema is not a pyarrow schema nor the base64 of one") from None
    try:
        _tabular.InputLayout(schemas[0])
        for field in schemas[1]:
            _tabular.output_type_ok(field.type.value_type if _tabular._is_list(field.type) else field.type)
    except _tabular.SchemaMismatch as err:
        raise BadModelUpload(f"model {name!r}: {err}") from None
    return texts


def _example(key):
    if key == "input_schema":
        return "pa.schema([pa.field('inputs', pa.list_(pa.float64(), list_size=4))])"
    return "pa.schema([pa.field('predictions', pa.float64())])"

