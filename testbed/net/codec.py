"""Wire format of control-plane messages: ZMQ multipart ``[header, *array_frames]``.

The header is UTF-8 JSON::

    {"v": PROTOCOL_VERSION, "type": "<message type>", "body": {...fields...},
     "arrays": [{"dtype": "float32", "shape": [4096]}, ...]}

Every numpy array inside the body is replaced by ``{"$frame": i}`` and its raw little-endian
bytes travel in frame ``i + 1``. Decoding checks, in this order: total size and frame count,
JSON (`load_json`: strict standard JSON within `JsonLimits` -- no NaN/Infinity, integers of at
most ``max_int_digits`` digits, strings of at most ``max_str_chars`` characters, nesting at most
``max_depth`` deep), version, type, array descriptors (dtype whitelist, shape, ``prod(shape) *
itemsize == len(frame)``, each frame referenced exactly once), then the message model. Any
failure raises `MessageError` with a ``kind`` and a reason of bounded length (values from the
wire are quoted shortened, `clip`). No pickle anywhere.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from pydantic import TypeAdapter, ValidationError

from testbed.net.errors import MessageError
from testbed.strict_json import DEFAULT_JSON_LIMITS, JsonInputError, JsonLimits, clip, \
    check_shape, fits_by_size
from testbed.strict_json import load_json as _load_json
from testbed.net.schema import (ARRAY_DTYPES, MESSAGE_TYPES, PROTOCOL_VERSION, AnyMessage, Message,
                                dtype_name)

FRAME_KEY = "$frame"
DEFAULT_MAX_MESSAGE_BYTES = 256 * 2**20
DEFAULT_MAX_FRAMES = 64
DEFAULT_MAX_HEADER_BYTES = 1 * 2**20
MAX_NDIM = 8

_ADAPTER: TypeAdapter = TypeAdapter(AnyMessage)


@dataclass(frozen=True)
class Codec:
    """Encoder/decoder with size limits.

    max_message_bytes: limit on the sum of all frame lengths, bytes.
    max_frames: limit on the number of frames (header included).
    max_header_bytes: limit on the JSON header length, bytes.
    json_limits: digits, string lengths and nesting depth allowed in the header.
    """

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_frames: int = DEFAULT_MAX_FRAMES
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    json_limits: JsonLimits = DEFAULT_JSON_LIMITS

    def encode(self, msg: Message) -> list[bytes]:
        """Serialize ``msg`` to multipart frames ``[header_json, *array_bytes]``."""
        if not isinstance(msg, Message) or msg.type not in MESSAGE_TYPES:
            raise MessageError("unknown_type", f"cannot encode {type(msg).__name__}")
        arrays: list[np.ndarray] = []
        body = _extract_arrays(msg.model_dump(mode="python", exclude={"type"}), arrays)
        descriptors = []
        frames: list[bytes] = [b""]
        for arr in arrays:
            name = dtype_name(arr.dtype)
            if name not in ARRAY_DTYPES:
                raise MessageError("bad_array", f"cannot send dtype {name}; convert "
                                   f"to one of {ARRAY_DTYPES}")
            descriptors.append({"dtype": name, "shape": list(arr.shape)})
            frames.append(arr.astype(_wire_dtype(name), copy=False).tobytes())  # C order
        header = {"v": PROTOCOL_VERSION, "type": msg.type, "body": body, "arrays": descriptors}
        try:
            frames[0] = json.dumps(header, allow_nan=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise MessageError("invalid", f"{msg.type} body is not JSON-serializable: {exc}")
        self._check_sizes(frames)
        if not fits_by_size(frames[0], self.json_limits):
            try:
                check_shape(header, self.json_limits, f"{msg.type} message")
            except JsonInputError as exc:
                raise MessageError("invalid", exc.reason) from None
        return frames

    def decode(self, frames: Sequence[bytes]) -> Message:
        """Parse multipart ``frames`` into a validated message; raise `MessageError` if bad."""
        self._check_sizes(frames)
        header = _parse_header(frames[0], self.json_limits)
        cls = MESSAGE_TYPES[header["type"]]
        descriptors = header.get("arrays", [])
        if not isinstance(descriptors, list):
            raise MessageError("bad_array", "'arrays' must be a list of descriptors")
        if len(descriptors) != len(frames) - 1:
            raise MessageError("frame_count", f"header describes {len(descriptors)} arrays "
                               f"but {len(frames) - 1} array frames arrived")
        arrays = [_frame_to_array(i, d, frames[i + 1]) for i, d in enumerate(descriptors)]
        used: set[int] = set()
        body = _insert_arrays(header["body"], arrays, used)  # depth bounded by json_limits
        if len(used) != len(arrays):
            unused = sorted(set(range(len(arrays))) - used)
            raise MessageError("bad_array", f"array frames {unused} are not referenced")
        if not isinstance(body, dict):
            raise MessageError("invalid", "'body' must be a JSON object")
        try:
            return _ADAPTER.validate_python({**body, "type": cls.model_fields["type"].default})
        except ValidationError as exc:
            errs = "; ".join(f"{clip('.'.join(map(str, e['loc'][1:])) or '<body>')}: "
                             f"{clip(e['msg'], 200)}" for e in exc.errors()[:5])
            raise MessageError("invalid", f"{header['type']} message: {errs}") from None

    def _check_sizes(self, frames: Sequence[bytes]) -> None:
        if len(frames) == 0:
            raise MessageError("frame_count", "empty message (no header frame)")
        if len(frames) > self.max_frames:
            raise MessageError("frame_count", f"{len(frames)} frames exceed the limit of "
                               f"{self.max_frames}")
        if len(frames[0]) > self.max_header_bytes:
            raise MessageError("oversized", f"header of {len(frames[0])} bytes exceeds "
                               f"{self.max_header_bytes} bytes")
        total = sum(len(f) for f in frames)
        if total > self.max_message_bytes:
            raise MessageError("oversized", f"message of {total} bytes exceeds the limit of "
                               f"{self.max_message_bytes} bytes (raise max_message_bytes on "
                               "both ends or split the tensor)")


DEFAULT_CODEC = Codec()


def encode(msg: Message) -> list[bytes]:
    """Encode with the default limits (see `Codec`)."""
    return DEFAULT_CODEC.encode(msg)


def decode(frames: Sequence[bytes]) -> Message:
    """Decode with the default limits (see `Codec`); raises `MessageError`."""
    return DEFAULT_CODEC.decode(frames)


def load_json(raw: bytes, limits: JsonLimits = DEFAULT_JSON_LIMITS,
              what: str = "header") -> Any:
    """`testbed.strict_json.load_json` raising `MessageError` (kinds bad_json, oversized)."""
    try:
        return _load_json(raw, limits, what)
    except JsonInputError as exc:
        raise MessageError(exc.kind, exc.reason) from None


def _parse_header(raw: bytes, limits: JsonLimits) -> dict[str, Any]:
    header = load_json(raw, limits)
    if not isinstance(header, dict):
        raise MessageError("bad_json", f"header must be a JSON object, got "
                           f"{type(header).__name__}")
    version = header.get("v")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise MessageError("version", f"protocol version {clip(version)} != {PROTOCOL_VERSION}; "
                           "run the same testbed version on every machine")
    mtype = header.get("type")
    if not isinstance(mtype, str) or mtype not in MESSAGE_TYPES:
        raise MessageError("unknown_type", f"message type {clip(mtype)} is not one of "
                           f"{sorted(MESSAGE_TYPES)}")
    if "body" not in header:
        raise MessageError("invalid", "header has no 'body'")
    return header


def _frame_to_array(i: int, desc: Any, frame: bytes) -> np.ndarray:
    if not isinstance(desc, dict) or set(desc) != {"dtype", "shape"}:
        raise MessageError("bad_array", f"array {i}: descriptor must be {{dtype, shape}}")
    dtype, shape = desc["dtype"], desc["shape"]
    if not isinstance(dtype, str) or dtype not in ARRAY_DTYPES:
        raise MessageError("bad_array", f"array {i}: dtype {clip(dtype)} not allowed; use one of "
                           f"{ARRAY_DTYPES}")
    if (not isinstance(shape, list) or len(shape) > MAX_NDIM
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                       for s in shape)):
        raise MessageError("bad_array", f"array {i}: shape {clip(shape)} must be a list of at most "
                           f"{MAX_NDIM} non-negative integers")
    dt = _wire_dtype(dtype)
    expected = math.prod(shape) * dt.itemsize
    if expected != len(frame):
        raise MessageError("bad_array", f"array {i}: {dtype}{tuple(shape)} needs {expected} "
                           f"bytes, frame has {len(frame)}")
    arr = np.frombuffer(frame, dtype=dt).reshape(shape)
    return arr.astype(arr.dtype.newbyteorder("="), copy=True)


@functools.lru_cache(maxsize=None)
def _wire_dtype(name: str) -> np.dtype:
    """The little-endian dtype arrays of dtype ``name`` (one of `ARRAY_DTYPES`) travel as."""
    return np.dtype(name).newbyteorder("<")


def _extract_arrays(obj: Any, out: list[np.ndarray]) -> Any:
    if isinstance(obj, np.ndarray):
        out.append(obj)
        return {FRAME_KEY: len(out) - 1}
    if isinstance(obj, dict):
        if FRAME_KEY in obj:
            raise MessageError("invalid", f"dict key {FRAME_KEY!r} is reserved by the codec")
        return {k: _extract_arrays(v, out) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_extract_arrays(v, out) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _insert_arrays(obj: Any, arrays: list[np.ndarray], used: set[int]) -> Any:
    if isinstance(obj, dict):
        if FRAME_KEY in obj:
            idx = obj[FRAME_KEY]
            if (len(obj) != 1 or not isinstance(idx, int) or isinstance(idx, bool)
                    or not 0 <= idx < len(arrays) or idx in used):
                raise MessageError("bad_array", f"bad frame reference {clip(obj)} "
                                   f"({len(arrays)} array frames)")
            used.add(idx)
            return arrays[idx]
        return {k: _insert_arrays(v, arrays, used) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_insert_arrays(v, arrays, used) for v in obj]
    return obj
