"""A TensorFlow.js graph model (model.json and its .bin shards) run with torch.

Small open detectors with usable licences (NanoDet, Apache-2.0) are published on the npm
registry only as TensorFlow.js graph models; TensorFlow itself is no dependency a WebUI or
this engine can carry. Such a graph is a list of TensorFlow ops over constants: this reads
the weights (float32, or float16/uint8/uint16 quantized) and evaluates the ops a graph names,
in torch, for the op set such converted detectors use. An op outside it is an error naming it.
Tensors keep TensorFlow's layouts (NHWC for the image ops); only the convolutions and pools
transpose around torch's NCHW kernels.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelNotFoundError

DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
QUANTIZED = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}


def read_weights(manifest: Sequence[Mapping[str, Any]], folder: Path) -> dict[str, np.ndarray]:
    """The named constants of a model.json's `weightsManifest`, dequantized to their dtype."""
    out: dict[str, np.ndarray] = {}
    for group in manifest:
        data = b"".join((folder / path).read_bytes() for path in group["paths"])
        offset = 0
        for spec in group["weights"]:
            shape = [int(v) for v in spec["shape"]]
            count = math.prod(shape)
            quant = spec.get("quantization")
            stored = np.dtype(QUANTIZED[quant["dtype"]] if quant else DTYPES[spec["dtype"]])
            size = count * stored.itemsize
            if offset + size > len(data):
                raise ModelNotFoundError(f"TensorFlow.js weights in {folder} end before {spec['name']!r}: "
                                         "the .bin file is incomplete; fetch it again")
            values = np.frombuffer(data, stored, count, offset).reshape(shape)
            offset += size
            if quant and quant["dtype"] != "float16":
                values = values.astype(np.float32) * quant["scale"] + quant["min"]
            out[spec["name"]] = values.astype(DTYPES[spec["dtype"]])
    return out


def _attr(node: Mapping[str, Any], name: str, default: Any = None) -> Any:
    value = node.get("attr", {}).get(name)
    if value is None:
        return default
    if "list" in value:  # of ints, or of base64 strings (fused ops' names)
        items = value["list"]
        return [int(v) for v in items.get("i", [])] or [base64.b64decode(v).decode() for v in items.get("s", [])]
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "f" in value:
        return float(value["f"])
    if "i" in value:
        return int(value["i"])
    if "b" in value:
        return bool(value["b"])
    return default


def _same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME padding (the extra pixel after, not before)."""
    reach = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + reach - size, 0)
    return total // 2, total - total // 2


class TfjsGraph:
    """A graph model: `run({input: array})` gives its named outputs as numpy arrays."""

    def __init__(self, model_json: Path):
        import torch

        try:
            spec = json.loads(model_json.read_text())
            self.nodes = {node["name"]: node for node in spec["modelTopology"]["node"]}
            weights = read_weights(spec["weightsManifest"], model_json.parent)
        except (OSError, ValueError, KeyError) as err:
            raise ModelNotFoundError(f"{model_json} is no TensorFlow.js graph model ({err.__class__.__name__}: "
                                     f"{err}): fetch it again") from None
        self.consts = {name: torch.from_numpy(np.array(value)) for name, value in weights.items()}
        missing = [name for name, node in self.nodes.items() if node["op"] == "Const" and name not in self.consts]
        if missing:
            raise ModelNotFoundError(f"{model_json}: no weights for {missing[:3]}: fetch the .bin file again")
        unknown = sorted({node["op"] for node in self.nodes.values()} - set(OPS) - {"Const", "Placeholder"})
        if unknown:
            raise ModelNotFoundError(f"{model_json} uses TensorFlow ops this runner does not know: {unknown}")

    def run(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> list[np.ndarray]:
        """Evaluate `outputs` ("node" or "node:index") given the placeholders' values."""
        import torch

        values: dict[str, list[Any]] = {name: [torch.from_numpy(np.ascontiguousarray(v))] for name, v in inputs.items()}

        def value(ref: str) -> Any:
            name, _, index = ref.lstrip("^").partition(":")
            if name not in values:
                node = self.nodes[name]
                if node["op"] == "Const":
                    values[name] = [self.consts[name]]
                elif node["op"] == "Placeholder":
                    raise ValueError(f"the graph needs its input {name!r}")
                else:
                    args = [value(i) for i in node.get("input", []) if not i.startswith("^")]
                    result = OPS[node["op"]](node, *args)
                    values[name] = list(result) if isinstance(result, tuple) else [result]
            return values[name][int(index or 0)]

        with torch.no_grad():
            return [value(ref).numpy() for ref in outputs]


def _ints(tensor: Any) -> list[int]:
    return [int(v) for v in tensor.reshape(-1).tolist()]


def _nchw(op: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda x: op(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def _conv2d(node: Mapping[str, Any], x: Any, kernel: Any, *rest: Any) -> Any:
    import torch.nn.functional as F

    if _attr(node, "data_format", "NHWC") != "NHWC":
        raise ModelNotFoundError(f"{node['name']}: only NHWC convolutions are supported")
    stride = _attr(node, "strides", [1, 1, 1, 1])[1:3]
    dilation = _attr(node, "dilations", [1, 1, 1, 1])[1:3]
    kh, kw = kernel.shape[:2]
    depthwise = node["op"] in ("DepthwiseConv2dNative", "FusedDepthwiseConv2dNative")
    if depthwise:  # (h, w, in, multiplier) -> (in * multiplier, 1, h, w)
        weight = kernel.permute(2, 3, 0, 1).reshape(-1, 1, kh, kw)
        groups = kernel.shape[2]
    else:  # (h, w, in, out) -> (out, in, h, w)
        weight, groups = kernel.permute(3, 2, 0, 1), 1
    if _attr(node, "padding") == "SAME":
        top, bottom = _same_padding(x.shape[1], kh, stride[0], dilation[0])
        left, right = _same_padding(x.shape[2], kw, stride[1], dilation[1])
        x = F.pad(x, (0, 0, left, right, top, bottom))
    elif _attr(node, "padding") == "EXPLICIT":
        pads = _attr(node, "explicit_paddings")
        x = F.pad(x, (0, 0, pads[4], pads[5], pads[2], pads[3]))
    y = _nchw(lambda t: F.conv2d(t, weight, None, stride, 0, dilation, groups))(x)
    for i, op in enumerate(_attr(node, "fused_ops", [])):
        if op == "BiasAdd":
            y = y + rest[i]
        elif op in ACTIVATIONS:
            y = ACTIVATIONS[op](node, y)
        else:
            raise ModelNotFoundError(f"{node['name']}: fused op {op!r} is not supported")
    return y


def _max_pool(node: Mapping[str, Any], x: Any) -> Any:
    import torch.nn.functional as F

    kh, kw = _attr(node, "ksize")[1:3]
    sh, sw = _attr(node, "strides")[1:3]
    if _attr(node, "padding") == "SAME":
        top, bottom = _same_padding(x.shape[1], kh, sh)
        left, right = _same_padding(x.shape[2], kw, sw)
        x = F.pad(x, (0, 0, left, right, top, bottom), value=-math.inf)
    return _nchw(lambda t: F.max_pool2d(t, (kh, kw), (sh, sw)))(x)


def _resize_bilinear(node: Mapping[str, Any], x: Any, size: Any) -> Any:
    import torch.nn.functional as F

    if _attr(node, "align_corners", False) or not _attr(node, "half_pixel_centers", False):
        raise ModelNotFoundError(f"{node['name']}: only half-pixel-centre bilinear resizing is supported")
    return _nchw(lambda t: F.interpolate(t, size=_ints(size), mode="bilinear", align_corners=False))(x)


def _pad(node: Mapping[str, Any], x: Any, paddings: Any, constant: Any = None) -> Any:
    import torch.nn.functional as F

    pairs = paddings.reshape(-1, 2).tolist()
    flat = [int(v) for pair in reversed(pairs) for v in pair]
    return F.pad(x, flat, value=float(constant) if constant is not None else 0.0)


def _split_v(node: Mapping[str, Any], x: Any, sizes: Any, axis: Any) -> tuple[Any, ...]:
    import torch

    return tuple(torch.split(x, _ints(sizes), dim=int(axis)))


def _sparse_to_dense(node: Mapping[str, Any], indices: Any, shape: Any, values: Any, default: Any) -> Any:
    import torch

    out = torch.full(_ints(shape), default.item(), dtype=values.dtype)
    if indices.numel():
        index = (indices.reshape(-1, 1) if indices.dim() < 2 else indices).long()
        out[tuple(index.t())] = values
    return out


def _concat(node: Mapping[str, Any], *args: Any) -> Any:
    import torch

    return torch.cat(args[:-1], dim=int(args[-1]))  # the axis comes last


def _leaky_relu(node: Mapping[str, Any], x: Any) -> Any:
    import torch.nn.functional as F

    return F.leaky_relu(x, _attr(node, "alpha", 0.2))


def _relu(node: Mapping[str, Any], x: Any) -> Any:
    return x.clamp(min=0)


def _relu6(node: Mapping[str, Any], x: Any) -> Any:
    return x.clamp(0, 6)


ACTIVATIONS: dict[str, Callable[..., Any]] = {"Relu": _relu, "Relu6": _relu6, "LeakyRelu": _leaky_relu}

OPS: dict[str, Callable[..., Any]] = {
    **ACTIVATIONS,
    "Identity": lambda node, x: x,
    "Add": lambda node, a, b: a + b,
    "AddV2": lambda node, a, b: a + b,
    "Sub": lambda node, a, b: a - b,
    "Mul": lambda node, a, b: a * b,
    "Sigmoid": lambda node, x: x.sigmoid(),
    "Transpose": lambda node, x, perm: x.permute(*_ints(perm)),
    "Reshape": lambda node, x, shape: x.reshape(_ints(shape)),
    "ConcatV2": _concat,
    "Pad": _pad,
    "PadV2": _pad,
    "Conv2D": _conv2d,
    "_FusedConv2D": _conv2d,
    "DepthwiseConv2dNative": _conv2d,
    "FusedDepthwiseConv2dNative": _conv2d,
    "MaxPool": _max_pool,
    "ResizeBilinear": _resize_bilinear,
    "SplitV": _split_v,
    "SparseToDense": _sparse_to_dense,
}
