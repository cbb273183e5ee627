"""Minimal safetensors reader/writer over numpy memmaps: every dtype (bf16 via ml_dtypes), tensor by tensor.

Our own because `safetensors`' numpy backend cannot read bf16 and its flax backend places every tensor on the
default device; reading a memmap lets the loader convert and place one tensor at a time.
"""
from __future__ import annotations

import json
import os
import struct
from typing import Iterable, Iterator

import ml_dtypes
import numpy as np

from rr1_jax.model.hf_config import WeightsError, read_json

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
           "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


class SafetensorsFile:
    """Header-parsed view of one .safetensors file; `get(name)` returns a read-only memmap slice."""

    def __init__(self, path: str):
        self.path = path
        if not os.path.isfile(path):
            raise WeightsError(f"{path}: file not found")
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            raw_len = f.read(8)
            if len(raw_len) < 8:
                raise WeightsError(f"{path}: corrupt safetensors file (shorter than its 8-byte header length)")
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len > size - 8:
                raise WeightsError(f"{path}: corrupt safetensors file (header length {header_len} exceeds file "
                                   f"size {size}); the file is truncated or not safetensors — re-download it")
            try:
                header = json.loads(f.read(header_len))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise WeightsError(f"{path}: corrupt safetensors file (header is not JSON)") from None
        header.pop("__metadata__", None)
        self._data_start = 8 + header_len
        self._entries = header
        for name, e in header.items():
            begin, end = e["data_offsets"]
            if e["dtype"] not in _DTYPES:
                raise WeightsError(f"{path}: tensor {name!r} has unsupported dtype {e['dtype']}")
            expected = int(np.prod(e["shape"], dtype=np.int64)) * np.dtype(_DTYPES[e["dtype"]]).itemsize
            if end - begin != expected or self._data_start + end > size:
                raise WeightsError(f"{path}: corrupt safetensors file (tensor {name!r} lies outside the file or "
                                   f"has the wrong byte size); the file is truncated — re-download it")
        self._mmap = np.memmap(path, dtype=np.uint8, mode="r")

    def keys(self) -> Iterable[str]:
        return self._entries.keys()

    def get(self, name: str) -> np.ndarray:
        e = self._entries[name]
        begin, end = e["data_offsets"]
        raw = self._mmap[self._data_start + begin:self._data_start + end]
        return raw.view(_DTYPES[e["dtype"]]).reshape(e["shape"])


class SafetensorsDir:
    """All tensors of an HF model directory: `model.safetensors` or sharded files listed in the index."""

    def __init__(self, model_dir: str):
        self.model_dir = model_dir
        index = os.path.join(model_dir, "model.safetensors.index.json")
        single = os.path.join(model_dir, "model.safetensors")
        if os.path.isfile(index):
            weight_map = read_json(index).get("weight_map", {})
            files = {fname: SafetensorsFile(os.path.join(model_dir, fname))
                     for fname in sorted(set(weight_map.values()))}
            self._where = {name: files[fname] for name, fname in weight_map.items()}
        elif os.path.isfile(single):
            f = SafetensorsFile(single)
            self._where = {name: f for name in f.keys()}
        else:
            raise WeightsError(f"{model_dir}: no model.safetensors or model.safetensors.index.json found; "
                               f"save the model with `save_pretrained(..., safe_serialization=True)`")

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def get(self, name: str) -> np.ndarray:
        if name not in self._where:
            raise WeightsError(f"{self.model_dir}: tensor {name!r} is missing from the safetensors files; "
                               f"the checkpoint does not match its config.json")
        return self._where[name].get(name)


def write_safetensors(path: str, tensors: Iterator[tuple[str, tuple[int, ...], np.dtype, "callable"]],
                      metadata: dict | None = None) -> None:
    """Write tensors given as (name, shape, dtype, produce) so each array is materialised only while written."""
    specs = list(tensors)
    header, offset = {}, 0
    for name, shape, dtype, _ in specs:
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        header[name] = {"dtype": _NAMES[np.dtype(dtype)], "shape": list(shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = metadata
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # align tensor data to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape, dtype, produce in specs:
            array = np.ascontiguousarray(produce(), dtype=dtype)
            if array.shape != tuple(shape):
                raise ValueError(f"tensor {name}: produced shape {array.shape}, declared {tuple(shape)}")
            f.write(array.tobytes())
