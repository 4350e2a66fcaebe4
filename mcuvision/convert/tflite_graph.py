"""Read a .tflite flatbuffer: tensors, constant buffers, operators, I/O quantization.

Weights flash is the bytes of constant tensors (buffers with data), each buffer counted once:
the same figure ST's tools report as "Weights Flash" for a TFLite model.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ai_edge_litert import schema_py_generated as schema  # the flatbuffer schema, without importing TensorFlow

from mcuvision.errors import PipelineError

_OPCODE_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]


class NotATfliteModel(PipelineError, ValueError):
    """The bytes are not a TFLite flatbuffer."""


def load(content: bytes, source: str | Path | None = None) -> schema.ModelT:
    """The parsed model; raises NotATfliteModel, naming `source` (the file) when given, when
    `content` lacks TFLite's file identifier ("TFL3" at bytes 4-8, the schema's file_identifier)
    or does not parse."""
    where = f"{source}: " if source is not None else ""
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise NotATfliteModel(f"{where}not a TFLite model (no TFL3 file identifier)")
    try:
        return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(content), 0))
    except Exception as error:  # flatbuffers raises struct.error, IndexError... on a damaged file
        raise NotATfliteModel(f"{where}a damaged TFLite model ({type(error).__name__}: {error})"[:300]) from error


def _tensor_info(tensor: schema.TensorT) -> TensorInfo:
    q = tensor.quantization
    scale = tuple(float(v) for v in (q.scale if q is not None and q.scale is not None else ()))
    zero = tuple(int(v) for v in (q.zeroPoint if q is not None and q.zeroPoint is not None else ()))
    name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
    shape = tuple(int(d) for d in (tensor.shape if tensor.shape is not None else ()))
    return TensorInfo(name, shape, _TYPE_NAMES[tensor.type].lower(), scale, zero)


def io_tensors(model: schema.ModelT) -> tuple[list[TensorInfo], list[TensorInfo]]:
    graph = model.subgraphs[0]
    return ([_tensor_info(graph.tensors[i]) for i in graph.inputs],
            [_tensor_info(graph.tensors[i]) for i in graph.outputs])


def weights_bytes(model: schema.ModelT) -> int:
    """Bytes of constant data referenced by tensors, each buffer once."""
    used = {t.buffer for g in model.subgraphs for t in g.tensors}
    return sum(len(model.buffers[b].data) for b in used
               if b < len(model.buffers) and model.buffers[b].data is not None)


def operator_names(model: schema.ModelT) -> list[str]:
    codes = model.operatorCodes
    names = []
    for op in model.subgraphs[0].operators:
        code = codes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        names.append(_OPCODE_NAMES.get(builtin, f"OP_{builtin}"))
    return names


def float_tensors(model: schema.ModelT) -> list[str]:
    """Names of float32 tensors that are not graph inputs/outputs: a hidden float fallback."""
    graph = model.subgraphs[0]
    io = set(graph.inputs) | set(graph.outputs)
    return [_tensor_info(t).name for i, t in enumerate(graph.tensors)
            if t.type == schema.TensorType.FLOAT32 and i not in io]

