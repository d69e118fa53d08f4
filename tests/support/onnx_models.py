"""Tiny ONNX models the tests make themselves, with the onnx package's helper."""

import onnx
from onnx import TensorProto, helper


def scaling_model(path, factor=2.0, width=1, input_name="x", output_name="scaled"):
    """An ONNX model mapping float32 [N, width] to ``factor`` times it, [N, width]; returns ``path``."""
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [None, width])
    y = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [None, width])
    scale = helper.make_tensor("factor", TensorProto.FLOAT, [1], [float(factor)])
    graph = helper.make_graph([helper.make_node("Mul", [input_name, "factor"], [output_name])], "scale",
                              [x], [y], [scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # what every onnxruntime since 1.14 reads
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)
