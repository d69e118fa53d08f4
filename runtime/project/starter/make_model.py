"""Make the starter project's model, ``model.onnx``, deterministically (needs onnx, a test dependency).

    python runtime/project/starter/make_model.py

A linear house-price model small enough to read: input ``float_input`` float32 [N, 4]
(bedrooms, bathrooms, sqft_living, house_age), output ``variable`` float32 [N, 1]:
price = 50,000 + 25,000 * bedrooms + 15,000 * bathrooms + 150 * sqft_living - 1,000 * house_age.
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WEIGHTS = [25_000.0, 15_000.0, 150.0, -1_000.0]
BIAS = 50_000.0


def make_model():
    weights = numpy_helper.from_array(np.array(WEIGHTS, dtype=np.float32).reshape(4, 1), "weights")
    bias = numpy_helper.from_array(np.array([BIAS], dtype=np.float32), "bias")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["float_input", "weights"], ["product"]),
         helper.make_node("Add", ["product", "bias"], ["variable"])],
        "starter_houseprice",
        [helper.make_tensor_value_info("float_input", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])],
        initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="orchzip")
    model.ir_version = 8  # readable by every onnxruntime orchzip supports
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    onnx.save(make_model(), os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.onnx"))
