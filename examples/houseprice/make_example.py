"""Make orchzip's example house-price model and inputs, deterministically.

    python examples/houseprice/make_example.py

writes, beside this script:
- ``model.onnx``: a regressor with the interface of the Wallaroo tutorial's house-price
  model (input ``float_input`` float32 [N, 18], output ``variable`` float32 [N, 1]): a small
  network of fixed random ReLU features whose output layer is fitted by least squares;
- ``inputs.parquet``: 4,000 rows of synthetic house features in one column ``tensor``
  (list<double>), in the tutorial's feature order.

The same numpy seed gives the same numbers on every machine, so the files only change when
this script does. Needs numpy, pyarrow and onnx (a test dependency).
"""

import os

import numpy as np
import onnx
import pyarrow as pa
import pyarrow.parquet as pq
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
ROWS = 4000
HIDDEN = 32
SEED = 20231120
FEATURES = [
    "bedrooms", "bathrooms", "sqft_living", "sqft_lot", "floors", "waterfront", "view",
    "condition", "grade", "sqft_above", "sqft_basement", "lat", "long", "sqft_living15",
    "sqft_lot15", "house_age", "renovated", "yrs_since_reno",
]


def make_houses(rng, n):
    """Plausible houses in the tutorial's 18-feature layout, rounded as real listings are."""
    bedrooms = rng.integers(1, 7, n)
    bathrooms = np.round(rng.uniform(1, 4.5, n) * 4) / 4
    sqft_living = np.round(rng.lognormal(7.5, 0.4, n) / 10) * 10
    sqft_lot = np.round(rng.lognormal(8.9, 0.6, n) / 10) * 10
    floors = rng.choice([1.0, 1.5, 2.0, 2.5, 3.0], n, p=[0.45, 0.1, 0.35, 0.05, 0.05])
    waterfront = (rng.random(n) < 0.01).astype(float)
    view = rng.choice([0, 1, 2, 3, 4], n, p=[0.85, 0.05, 0.05, 0.03, 0.02]).astype(float)
    condition = rng.integers(1, 6, n).astype(float)
    grade = np.clip(np.round(5 + sqft_living / 800 + rng.normal(0, 1, n)), 3, 13)
    basement_share = np.where(rng.random(n) < 0.4, rng.uniform(0.1, 0.4, n), 0.0)
    sqft_basement = np.round(sqft_living * basement_share / 10) * 10
    sqft_above = sqft_living - sqft_basement
    lat = np.round(rng.uniform(47.15, 47.78, n), 4)
    long = np.round(rng.uniform(-122.52, -121.31, n), 3)
    sqft_living15 = np.round(sqft_living * rng.uniform(0.7, 1.3, n) / 10) * 10
    sqft_lot15 = np.round(sqft_lot * rng.uniform(0.7, 1.3, n) / 10) * 10
    house_age = rng.integers(0, 115, n).astype(float)
    renovated = (rng.random(n) < 0.05).astype(float)
    yrs_since_reno = np.where(renovated > 0, rng.integers(0, 40, n), 0).astype(float)
    columns = [
        bedrooms, bathrooms, sqft_living, sqft_lot, floors, waterfront, view, condition, grade,
        sqft_above, sqft_basement, lat, long, sqft_living15, sqft_lot15, house_age, renovated,
        yrs_since_reno,
    ]
    return np.column_stack([np.asarray(c, dtype=np.float64) for c in columns])


def price_of(x, rng):
    """A made-up market: size, grade, location and water drive the price, with noise."""
    north = (x[:, 11] - 47.15) / 0.63
    price = (
        120_000 + 180 * x[:, 2] + 45_000 * (x[:, 8] - 7) + 500_000 * x[:, 5]
        + 60_000 * x[:, 6] + 250_000 * north - 800 * x[:, 15] + 20_000 * x[:, 16]
    )
    return np.maximum(price * rng.lognormal(0, 0.1, len(x)), 75_000)


def fit_model(x, y, rng):
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    w1 = rng.normal(0, 1 / np.sqrt(x.shape[1]), (x.shape[1], HIDDEN))
    b1 = rng.normal(0, 0.5, HIDDEN)
    hidden = np.maximum((x - mean) / std @ w1 + b1, 0)
    design = np.column_stack([hidden, np.ones(len(x))])
    solution, *_ = np.linalg.lstsq(design, y, rcond=None)
    return mean, std, w1, b1, solution[:-1].reshape(-1, 1), solution[-1:]


def onnx_model(mean, std, w1, b1, w2, b2):
    def const(name, value):
        return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)

    nodes = [
        helper.make_node("Sub", ["float_input", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "w1"], ["h_linear"]),
        helper.make_node("Add", ["h_linear", "b1"], ["h_biased"]),
        helper.make_node("Relu", ["h_biased"], ["hidden"]),
        helper.make_node("MatMul", ["hidden", "w2"], ["o_linear"]),
        helper.make_node("Add", ["o_linear", "b2"], ["variable"]),
    ]
    graph = helper.make_graph(
        nodes,
        "orchzip_houseprice",
        [helper.make_tensor_value_info("float_input", TensorProto.FLOAT, [None, 18])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])],
        initializer=[const("mean", mean), const("std", std), const("w1", w1), const("b1", b1),
                     const("w2", w2), const("b2", b2)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="orchzip")
    model.ir_version = 8  # readable by onnxruntime releases from 2021 on
    onnx.checker.check_model(model)
    return model


def main():
    rng = np.random.default_rng(SEED)
    train = make_houses(rng, 20_000)
    model = onnx_model(*fit_model(train, price_of(train, rng), rng))
    onnx.save(model, os.path.join(HERE, "model.onnx"))
    inputs = make_houses(rng, ROWS)
    tensor = pa.ListArray.from_arrays(
        pa.array(np.arange(0, ROWS * 18 + 1, 18, dtype=np.int32)), pa.array(inputs.reshape(-1))
    )
    pq.write_table(pa.table({"tensor": tensor}), os.path.join(HERE, "inputs.parquet"), compression="zstd")


if __name__ == "__main__":
    main()
