"""Facts read from an ONNX model: the weights it stores."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def weights_bytes(model: onnx.ModelProto) -> int:
    """Bytes of initializers as stored (int4 packed two per byte)."""
    total = 0
    for init in model.graph.initializer:
        if init.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
            total += (int(np.prod(init.dims)) + 1) // 2
        else:
            total += numpy_helper.to_array(init).nbytes
    return total
