"""Wallaroo's ``Framework.SKLEARN``: a pickled (or joblib-dumped) scikit-learn estimator.

Runs inside the model's environment (scikit-learn as Wallaroo's runtime has it). The input
columns become one 2-D array and the outputs are named as the output schema says (see
``_tabular``): ``predictions`` from ``predict``, ``probabilities`` from ``predict_proba``.
Regressors, classifiers, clusterers and ``Pipeline`` objects all work, as on Wallaroo.
"""

import os
import pickle

import numpy as np

# Always imported as part of the loaders package: were this folder on sys.path, this module
# would shadow scikit-learn itself (named sklearn too) while the model unpickles.
from . import ModelLoadError, _tabular

__all__ = ["load", "read_model"]


class NotAModel(ModelLoadError, ValueError):
    """The file is not a scikit-learn model; ``str(err)`` is one line."""


def read_model(path):
    """The estimator in ``path``: joblib first (it also reads plain pickles), else pickle."""
    if os.path.isdir(path):
        raise NotAModel(f"{path} is a folder; a scikit-learn model is one pickle or joblib file")
    try:
        import joblib
        model = joblib.load(path)
    except ImportError:
        with open(path, "rb") as fh:
            model = pickle.load(fh)
    except Exception as err:  # unpickling raises whatever the file's bytes make it raise
        raise NotAModel(
            f"{os.path.basename(path)} is not a pickled scikit-learn model ({type(err).__name__}: "
            f"{_first_line(err)}); save it with pickle.dump(model, f) or joblib.dump(model, path)") from None
    if not callable(getattr(model, "predict", None)):
        raise NotAModel(f"{os.path.basename(path)} holds a {type(model).__name__}, which has no predict(); "
                        f"upload a fitted scikit-learn estimator")
    return model


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else "no message"


def load(path, spec):
    """The model as ``callable({column: array}) -> {output: array}``, checked against its schemas.

    :param path: the stored model file.
    :param spec: the model spec; ``input_schema`` and ``output_schema`` are required.
    :raises SchemaMismatch: the schemas do not fit the model (one line).
    """
    model = read_model(path)
    kind = type(model).__name__
    return TabularModel(model, spec, kind, has_proba=hasattr(model, "predict_proba"),
                        width=getattr(model, "n_features_in_", None))


class TabularModel:
    """A predict/predict_proba model behind the worker's dict-of-arrays interface.

    The schemas are checked once here, and the model is called once on a row of zeros so
    that an output of the wrong width is reported at upload, not at the first inference.
    """

    def __init__(self, model, spec, kind, has_proba, width, single_output=False, call=None):
        for key in ("input_schema", "output_schema"):
            if not spec.get(key):
                raise _tabular.SchemaMismatch(
                    f"a {spec.get('framework', 'scikit-learn')} model needs an {key} at upload, as Wallaroo "
                    f"requires it")
        self.kind = kind
        self.layout = _tabular.InputLayout(_tabular.read_schema(spec["input_schema"]))
        self.layout.check_width(width, kind)
        self.output_schema = _tabular.read_schema(spec["output_schema"])
        self.methods = _tabular.output_methods(self.output_schema, has_proba, kind, single_output)
        self._call = call or (lambda method, matrix: getattr(model, method)(matrix))
        probe_width = self.layout.width or width
        if probe_width:
            self({c: np.zeros((1, probe_width) if len(self.layout.columns) == 1 else 1, self.layout.dtype)
                  for c in self.layout.columns})

    def __call__(self, inputs):
        matrix = self.layout.features(inputs)
        results, cache = {}, {}
        for name, method in self.methods.items():
            if method not in cache:
                cache[method] = self._predict(method, matrix)
            results[name] = cache[method]
        return _tabular.shape_outputs(results, self.output_schema, self.kind)

    def _predict(self, method, matrix):
        try:
            return self._call(method, matrix)
        except ValueError as err:  # scikit-learn says what was wrong with X in its first line
            raise _tabular.SchemaMismatch(f"the {self.kind} refused the rows: {_first_line(err)}") from None
