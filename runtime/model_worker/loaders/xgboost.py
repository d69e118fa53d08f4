"""Wallaroo's ``Framework.XGBOOST``: a pickled XGBoost model.

Runs inside the model's environment (xgboost as Wallaroo's runtime has it). Wallaroo takes
XGBoost models as pickles only ("XGB files are not supported": no ``save_model`` JSON, UBJSON
or old binary), of the kinds its guide lists: ``XGBRegressor``, ``XGBClassifier``, their
random-forest forms, and a ``Booster`` trained with ``xgboost.train`` (one output: what its
``predict`` gives). ``XGBRanker`` runs on Wallaroo as a BYOP model, so it is refused here.
Inputs and outputs follow ``_tabular``, as for scikit-learn.
"""

import contextlib
import os
import pickle
import sys

from .sklearn import NotAModel, TabularModel, _first_line

__all__ = ["load", "read_model"]

# save_model's own formats: JSON and UBJSON both open an object with "{"; the old binary
# format starts with "binf".
_NATIVE_PREFIXES = (b"{", b"binf")


def read_model(path):
    """The unpickled XGBoost model in ``path``."""
    if os.path.isdir(path):
        raise NotAModel(f"{path} is a folder; an XGBoost model is one pickle file")
    name = os.path.basename(path)
    with open(path, "rb") as fh:
        head = fh.read(4)
        if head.startswith(_NATIVE_PREFIXES):
            raise NotAModel(
                f"{name} is in XGBoost's own save_model format, which Wallaroo does not take; "
                f"upload a pickle instead: pickle.dump(model, open('model.pkl', 'wb'))")
        fh.seek(0)
        try:
            # xgboost logs through print() (e.g. that a pickle comes from another version): keep
            # it off stdout, which may carry the worker's answers.
            with contextlib.redirect_stdout(sys.stderr):
                model = pickle.load(fh)
        except Exception as err:  # unpickling raises whatever the file's bytes make it raise
            raise NotAModel(f"{name} is not a pickled XGBoost model ({type(err).__name__}: "
                            f"{_first_line(err)}); save it with pickle.dump(model, f)") from None
    import xgboost

    if isinstance(model, xgboost.XGBRanker):
        raise NotAModel(f"{name} holds an XGBRanker, which Wallaroo runs as an arbitrary-Python "
                        f"model: upload it wrapped in a BYOP model (framework custom)")
    if not isinstance(model, (xgboost.Booster, xgboost.XGBModel)):
        raise NotAModel(f"{name} holds a {type(model).__module__}.{type(model).__name__}, not an XGBoost "
                        f"model; upload a pickled XGBRegressor, XGBClassifier or Booster")
    return model


def load(path, spec):
    """The model as ``callable({column: array}) -> {output: array}``, checked against its schemas.

    :raises SchemaMismatch: the schemas do not fit the model (one line).
    """
    import xgboost

    model = read_model(path)
    kind = type(model).__name__
    if isinstance(model, xgboost.Booster):
        return TabularModel(model, spec, kind, has_proba=False, width=model.num_features(),
                            single_output=True,
                            call=lambda _method, matrix: model.predict(xgboost.DMatrix(matrix)))
    return TabularModel(model, spec, kind, has_proba=hasattr(model, "predict_proba"),
                        width=getattr(model, "n_features_in_", None))

