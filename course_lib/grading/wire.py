"""The message format between the grader and the answer sandbox: plain data, never pickle.

The grader (trusted) and the sandboxed process that runs a student's code
(untrusted, :mod:`course_lib.grading.sandbox`) exchange *values* - call
arguments one way, return values the other - through this module only. A value
is built from:

* ``None``, ``bool``, ``int``, ``float`` (``nan`` and ``inf`` too), ``str``;
* ``list``, ``tuple`` and ``dict`` with ``str`` keys, nested (at most
  :data:`MAX_DEPTH` levels); subclasses travel as the plain type (``torch.Size``
  and named tuples arrive as tuples, ``OrderedDict`` as a dict, ``IntEnum`` as an int);
* ``torch.Tensor`` and ``numpy.ndarray`` (and numpy scalars such as
  ``np.int64(3)``) of the dtypes in :data:`DTYPES`: bool, uint8, int8..int64,
  float16, bfloat16 (tensors only), float32, float64, complex64, complex128,
  and for numpy arrays also uint16..uint64. A tensor arrives as a tensor, an
  array as an array, a numpy scalar as a numpy scalar: which one it was is
  part of the message. Tensors travel detached, dense, contiguous, on the
  CPU; ``requires_grad`` of a floating tensor is kept, nothing else about it
  (no grad, no graph, no subclass, no device).

Anything else (a set, a function, an ``nn.Module``, an object array, a
sparse tensor, a dict with an int key, ...) is an encoding error naming the
type and where it was found, e.g. ``value[2]['weight']``.

Layout of one message (what :func:`encode` returns and :func:`decode` reads)::

    u32 little-endian   length H of the header
    H bytes             header: JSON (ASCII), the value tree
    P bytes             payload: the raw little-endian bytes of every tensor
                        and array, one after the other, in tree order

In the header, JSON ``null``/``true``/``false``/numbers/strings/arrays stand
for ``None``/``bool``/``int``/``float``/``str``/``list`` (finite floats are
written with ``repr``, which round-trips exactly); every other value is a JSON
object with exactly one key: ``{"$float": "nan"|"inf"|"-inf"}``,
``{"$tuple": [...]}``, ``{"$dict": [[key, value], ...]}`` and
``{"$tensor"|"$ndarray"|"$npscalar": {"dtype": ..., "shape": [...],
"nbytes": ...}}`` (tensors also ``"requires_grad"``). The payload of a tensor
has no offset field: tensors take consecutive slices of the payload in the
order they appear, and the slices must use the payload exactly, so one byte
of payload decodes into at most one byte of tensor data.

A *frame* (:func:`write_frame`, :func:`read_frame`, :class:`FrameReader`) is
``b"CNW1"`` + u64 little-endian message length + message.

Decoding is defensive because the sandbox side is hostile: the length is
checked against a cap (default :data:`DEFAULT_MAX_BYTES`, 256 MiB) before any
of the message is read, the body is read as it arrives (a frame that claims
200 MB and sends 10 bytes costs 10 bytes), the JSON header has its own cap
(:data:`DEFAULT_MAX_HEADER_BYTES`, 16 MiB: JSON inflates into Python objects,
up to ~20x for ``[[],[],...]``), nesting is limited, every tag, dtype, shape
and size is checked, and any malformed content raises :class:`WireError`.
Nothing is ever evaluated, imported by name or unpickled.

This file must stay importable on its own (standard library only; numpy and
torch are imported when a value needs them): the sandbox loads it by path,
without ``course_lib``.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_HEADER_BYTES",
    "DTYPES",
    "FrameReader",
    "MAX_DEPTH",
    "WireEOF",
    "WireError",
    "decode",
    "encode",
    "encode_parts",
    "frame_header",
    "read_frame",
    "write_frame",
]

MAGIC = b"CNW1"
_FRAME = struct.Struct("<4sQ")  # magic, length of the message that follows
_HEADER_LEN = struct.Struct("<I")
FRAME_HEADER_SIZE = _FRAME.size  # 12

DEFAULT_MAX_BYTES = 256 * 2**20
DEFAULT_MAX_HEADER_BYTES = 16 * 2**20
MAX_DEPTH = 64
MAX_NDIM = 32
MAX_DIM = 2**48  # one dimension; the byte count is checked against the payload anyway

# name -> (numpy dtype string, little-endian; bytes per element; allowed for tensors).
# bfloat16 has no numpy dtype: its bytes travel as "<u2" and torch reinterprets them.
DTYPES: dict[str, tuple[str, int, bool]] = {
    "bool": ("|b1", 1, True),
    "uint8": ("|u1", 1, True),
    "int8": ("|i1", 1, True),
    "int16": ("<i2", 2, True),
    "int32": ("<i4", 4, True),
    "int64": ("<i8", 8, True),
    "uint16": ("<u2", 2, False),
    "uint32": ("<u4", 4, False),
    "uint64": ("<u8", 8, False),
    "float16": ("<f2", 2, True),
    "bfloat16": ("<u2", 2, True),
    "float32": ("<f4", 4, True),
    "float64": ("<f8", 8, True),
    "complex64": ("<c8", 8, True),
    "complex128": ("<c16", 16, True),
}

_ARRAY_TAGS = ("$tensor", "$ndarray", "$npscalar")


class WireError(ValueError):
    """A value that cannot be encoded, or bytes that are not a well-formed message."""


class WireEOF(WireError):
    """The stream ended cleanly, at a frame boundary, before a frame."""


# --- encoding -------------------------------------------------------------------------------------


def _array_meta(dtype_name: str, shape, nbytes: int) -> dict:
    return {"dtype": dtype_name, "shape": [int(d) for d in shape], "nbytes": int(nbytes)}


def _le_bytes(array) -> memoryview:
    """The bytes of a C-contiguous numpy array in little-endian order, without a copy where possible."""
    import numpy as np

    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and sys.byteorder == "big"):
        array = array.astype(array.dtype.newbyteorder("<"))
    array = np.ascontiguousarray(array)
    return memoryview(array.reshape(-1).view(np.uint8))


def _encode_tensor(value, where: str, payload: list) -> dict:
    torch = sys.modules["torch"]
    if value.layout != torch.strided:
        raise WireError(f"{where} is a {value.layout} tensor; only dense (strided) tensors can be sent")
    if value.is_quantized or value.is_meta:
        raise WireError(f"{where} is a {'quantized' if value.is_quantized else 'meta'} tensor, which cannot be sent")
    requires_grad = bool(value.requires_grad)
    t = value.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.resolve_conj().resolve_neg().contiguous()
    name = str(t.dtype).replace("torch.", "")
    if name not in DTYPES or not DTYPES[name][2]:
        raise WireError(f"{where} is a tensor of dtype {t.dtype}, which cannot be sent (allowed: {_allowed(True)})")
    if name == "bfloat16":
        t = t.view(torch.int16)
    array = torch.Tensor.numpy(t)
    data = _le_bytes(array)
    payload.append(data)
    meta = _array_meta(name, value.shape, data.nbytes)
    meta["requires_grad"] = requires_grad
    return {"$tensor": meta}


def _encode_ndarray(value, where: str, payload: list, tag: str) -> dict:
    import numpy as np

    array = np.asarray(value) if tag == "$npscalar" else value
    name = array.dtype.name
    if array.dtype.kind not in "biufc" or name not in DTYPES or array.dtype.fields is not None:
        what = "numpy scalar" if tag == "$npscalar" else "numpy array"
        raise WireError(f"{where} is a {what} of dtype {array.dtype}, which cannot be sent (allowed: {_allowed(False)})")
    data = _le_bytes(array)
    payload.append(data)
    return {tag: _array_meta(name, array.shape, data.nbytes)}


def _allowed(tensor: bool) -> str:
    return ", ".join(name for name, (_, _, ok) in DTYPES.items() if ok or not tensor)


def _encode(value, where: str, payload: list, depth: int):
    if depth > MAX_DEPTH:
        raise WireError(f"{where} is nested more than {MAX_DEPTH} levels deep (or contains itself)")
    # Exact types first: the common case, and subclasses (bool of int, numpy's float64 of
    # float, IntEnum, ...) must not slip through as their base type unnoticed.
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        if value.bit_length() > 13_000:  # json writes ints in decimal; Python caps int<->str at 4300 digits
            raise WireError(f"{where} is an int with more than 3900 digits")
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if kind is list or kind is tuple:
        items = [_encode(item, f"{where}[{i}]", payload, depth + 1) for i, item in enumerate(value)]
        return items if kind is list else {"$tuple": items}
    if kind is dict:
        pairs = []
        for key, item in value.items():
            if type(key) is not str:
                raise WireError(f"{where} has the key {key!r} of type {type(key).__name__}; only str keys can be sent")
            pairs.append([key, _encode(item, f"{where}[{key!r}]", payload, depth + 1)])
        return {"$dict": pairs}
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return _encode_tensor(value, where, payload)
    np = sys.modules.get("numpy")
    if np is not None:
        if kind is np.ndarray:
            return _encode_ndarray(value, where, payload, "$ndarray")
        if isinstance(value, np.ndarray):
            raise WireError(
                f"{where} is a {kind.__module__}.{kind.__qualname__}, a subclass of numpy.ndarray; "
                "only plain arrays can be sent (convert with numpy.asarray)"
            )
        if isinstance(value, np.generic):
            return _encode_ndarray(value, where, payload, "$npscalar")
    # Subclasses of the plain types travel as the plain type: torch.Size and namedtuples as
    # tuples, OrderedDict as a dict, IntEnum as an int.
    for base in (int, float, str, list, tuple, dict):
        if isinstance(value, base) and not isinstance(value, bool):
            return _encode(base(value) if base in (int, float, str) else base(value), where, payload, depth)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    raise WireError(
        f"{where} has the type {name}, which cannot be sent: only None, bool, int, float, str, list, tuple, "
        "dict with str keys, torch.Tensor and numpy.ndarray can"
    )


def encode_parts(value, *, max_bytes: int = DEFAULT_MAX_BYTES, name: str = "value") -> list:
    """``value`` as a list of bytes-like parts whose concatenation is the message.

    Large tensors are not copied into one buffer: their parts are views of the
    (contiguous, little-endian) data. Raises :class:`WireError` for a value
    that is not plain data (the message calls it ``name``: ``value['a'][1] has
    the type object ...``), or a message over ``max_bytes``.
    """
    payload: list = []
    tree = _encode(value, name, payload, 0)
    try:
        # ASCII with escapes: lone surrogates in a str survive the round trip.
        header = json.dumps(tree, allow_nan=False, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    except ValueError as error:  # an int too long for str(), in some corner
        raise WireError(f"cannot encode the value: {error}") from None
    parts = [_HEADER_LEN.pack(len(header)), header, *payload]
    size = sum(len(part) if isinstance(part, bytes) else part.nbytes for part in parts)
    if size > max_bytes:
        raise WireError(f"the message would be {size / 2**20:.1f} MiB, over the limit of {max_bytes / 2**20:.1f} MiB")
    return parts


def encode(value, *, max_bytes: int = DEFAULT_MAX_BYTES, name: str = "value") -> bytes:
    """``value`` as one message (header + payload; no frame). See the module docstring."""
    return b"".join(encode_parts(value, max_bytes=max_bytes, name=name))


# --- decoding -------------------------------------------------------------------------------------


class _Object(list):
    """A JSON object as its list of (key, value) pairs: tags are checked, never looked up loosely."""


def _reject_constant(name: str):
    raise WireError(f"the header contains the JSON constant {name}")


def _tag(node: _Object) -> tuple[str, object]:
    if len(node) != 1:
        raise WireError(f"a JSON object in the header has {len(node)} keys; tagged values have exactly one")
    return node[0]


def _meta(node, tag: str) -> tuple[str, tuple[int, ...], int, bool]:
    if not isinstance(node, _Object):
        raise WireError(f"{tag} must hold an object")
    fields = dict(node)
    expected = {"dtype", "shape", "nbytes"} | ({"requires_grad"} if tag == "$tensor" else set())
    if len(fields) != len(node) or set(fields) != expected:
        raise WireError(f"{tag} must have exactly the fields {sorted(expected)}, got {sorted(k for k, _ in node)}")
    dtype, shape, nbytes = fields["dtype"], fields["shape"], fields["nbytes"]
    requires_grad = fields.get("requires_grad", False)
    if type(dtype) is not str or dtype not in DTYPES or (tag == "$tensor" and not DTYPES[dtype][2]):
        raise WireError(f"{tag} has an unknown dtype {dtype!r}")
    if tag != "$tensor" and dtype == "bfloat16":
        raise WireError("numpy has no bfloat16")
    if type(shape) is not list or len(shape) > MAX_NDIM or any(type(d) is not int or not 0 <= d <= MAX_DIM for d in shape):
        raise WireError(f"{tag} has an invalid shape {str(shape)[:80]}")
    if tag == "$npscalar" and shape:
        raise WireError("a numpy scalar has shape []")
    if type(nbytes) is not int or type(requires_grad) is not bool:
        raise WireError(f"{tag} has an invalid nbytes or requires_grad")
    count = math.prod(shape)
    if nbytes != count * DTYPES[dtype][1]:
        raise WireError(f"{tag} of dtype {dtype} and shape {shape} cannot have {nbytes} bytes")
    return dtype, tuple(shape), count, requires_grad


def _decode_array(tag: str, node, payload: memoryview, state: list):
    dtype, shape, count, requires_grad = _meta(node, tag)
    import numpy as np

    np_dtype = np.dtype(DTYPES[dtype][0])
    start = state[0]
    end = start + count * np_dtype.itemsize
    if end > len(payload):
        raise WireError(f"{tag} of shape {list(shape)} needs {end - start} bytes; the payload has {len(payload) - start} left")
    state[0] = end
    if dtype == "bool" and count and np.frombuffer(payload, np.uint8, count, start).max() > 1:
        raise WireError("a bool array holds a byte other than 0 or 1")
    # A copy: the result owns its memory, is writable, in native byte order.
    native = np_dtype.newbyteorder("=")
    if count:
        array = np.frombuffer(payload, np_dtype, count, start).reshape(shape).astype(native, copy=True)
    else:
        array = np.empty(shape, native)
    if tag == "$ndarray":
        return array
    if tag == "$npscalar":
        return array[()]
    import torch

    if dtype == "bfloat16":
        tensor = torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    else:
        tensor = torch.from_numpy(array)
    if requires_grad and (tensor.is_floating_point() or tensor.is_complex()):
        tensor.requires_grad_(True)
    return tensor


def _decode(node, payload: memoryview, state: list, depth: int):
    if depth > MAX_DEPTH:
        raise WireError(f"the value is nested more than {MAX_DEPTH} levels deep")
    kind = type(node)
    if node is None or kind is bool or kind is str or kind is int or kind is float:
        return node
    if kind is list:
        return [_decode(item, payload, state, depth + 1) for item in node]
    if kind is not _Object:
        raise WireError(f"unexpected {kind.__name__} in the header")
    tag, inner = _tag(node)
    if tag == "$float":
        if inner not in ("nan", "inf", "-inf"):
            raise WireError(f"$float must be 'nan', 'inf' or '-inf', got {str(inner)[:40]!r}")
        return float(inner)
    if tag == "$tuple":
        if type(inner) is not list:
            raise WireError("$tuple must hold an array")
        return tuple(_decode(item, payload, state, depth + 1) for item in inner)
    if tag == "$dict":
        if type(inner) is not list:
            raise WireError("$dict must hold an array of [key, value] pairs")
        result = {}
        for pair in inner:
            if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str:
                raise WireError("$dict must hold [str, value] pairs")
            if pair[0] in result:
                raise WireError(f"$dict has the key {pair[0][:40]!r} twice")
            result[pair[0]] = _decode(pair[1], payload, state, depth + 1)
        return result
    if tag in _ARRAY_TAGS:
        return _decode_array(tag, inner, payload, state)
    raise WireError(f"unknown tag {str(tag)[:40]!r} in the header")


def decode(message, *, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES):
    """The value in one message (bytes-like: header + payload). Raises :class:`WireError` when malformed."""
    data = memoryview(message).cast("B")
    if len(data) < _HEADER_LEN.size:
        raise WireError(f"a message has at least {_HEADER_LEN.size} bytes, got {len(data)}")
    (header_len,) = _HEADER_LEN.unpack_from(data)
    if header_len > len(data) - _HEADER_LEN.size:
        raise WireError(f"the header claims {header_len} bytes; the message has {len(data) - _HEADER_LEN.size}")
    if header_len > max_header_bytes:
        raise WireError(f"the header has {header_len} bytes, over the limit of {max_header_bytes}")
    start = _HEADER_LEN.size
    try:
        text = bytes(data[start : start + header_len]).decode("ascii")
        tree = json.loads(text, object_pairs_hook=_Object, parse_constant=_reject_constant)
    except WireError:
        raise
    except (ValueError, RecursionError, MemoryError) as error:  # bad JSON, too deep, int too long, ...
        raise WireError(f"the header is not valid JSON: {type(error).__name__}: {str(error)[:120]}") from None
    payload = data[start + header_len :]
    state = [0]
    try:
        value = _decode(tree, payload, state, 0)
    except WireError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as error:
        raise WireError(f"the message does not decode: {type(error).__name__}: {str(error)[:120]}") from None
    if state[0] != len(payload):
        raise WireError(f"the payload has {len(payload) - state[0]} bytes that no tensor or array uses")
    return value


# --- frames ---------------------------------------------------------------------------------------


def frame_header(length: int) -> bytes:
    """The 12 bytes that precede a message of ``length`` bytes."""
    return _FRAME.pack(MAGIC, length)


def _check_frame_header(header: bytes, max_bytes: int) -> int:
    magic, length = _FRAME.unpack(header)
    if magic != MAGIC:
        raise WireError(f"a frame starts with {MAGIC!r}, got {magic!r}")
    if length > max_bytes:
        raise WireError(f"a frame of {length} bytes is over the limit of {max_bytes}")
    return length


def _write_all(dest, data) -> None:
    view = memoryview(data).cast("B")
    if isinstance(dest, int):
        while view:
            written = os.write(dest, view)
            view = view[written:]
    else:
        dest.write(view)


def write_frame(dest, value, *, max_bytes: int = DEFAULT_MAX_BYTES) -> int:
    """Write ``value`` as one frame to ``dest`` (a file descriptor or a binary file); returns the bytes written.

    Encoding errors are raised before anything is written.
    """
    parts = encode_parts(value, max_bytes=max_bytes)
    length = sum(memoryview(part).nbytes for part in parts)
    _write_all(dest, frame_header(length))
    for part in parts:
        _write_all(dest, part)
    if not isinstance(dest, int) and hasattr(dest, "flush"):
        dest.flush()
    return FRAME_HEADER_SIZE + length


def _read_exactly(source, count: int, *, at_start: bool = False) -> bytes:
    """``count`` bytes from ``source``, read in chunks of at most 1 MiB (memory follows what arrives)."""
    buffer = bytearray()
    while len(buffer) < count:
        want = min(count - len(buffer), 2**20)
        chunk = os.read(source, want) if isinstance(source, int) else source.read(want)
        if not chunk:
            if at_start and not buffer:
                raise WireEOF("the stream ended")
            raise WireError(f"the stream ended inside a frame ({len(buffer)} of {count} bytes)")
        buffer += chunk
    return bytes(buffer)


def read_frame(source, max_bytes: int = DEFAULT_MAX_BYTES, *, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES):
    """Read one frame from ``source`` (a file descriptor or a binary file) and decode it.

    Raises :class:`WireEOF` when the stream ends before a frame, :class:`WireError`
    when the frame is malformed or over ``max_bytes``. Blocks until the frame is
    complete: use :class:`FrameReader` where a deadline matters.
    """
    length = _check_frame_header(_read_exactly(source, FRAME_HEADER_SIZE, at_start=True), max_bytes)
    return decode(_read_exactly(source, length), max_header_bytes=max_header_bytes)


class FrameReader:
    """Cut frames out of a byte stream fed in pieces (for non-blocking reads with a deadline).

    ``feed(data)`` returns the messages (undecoded bodies) completed by ``data``;
    a bad magic or a length over ``max_bytes`` raises :class:`WireError` as soon
    as the 12-byte frame header is in. ``pending`` is the number of bytes held
    of a frame not yet complete.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._length: int | None = None

    @property
    def pending(self) -> int:
        return len(self._buffer) + (FRAME_HEADER_SIZE if self._length is not None else 0)

    def feed(self, data) -> list[bytes]:
        self._buffer += data
        messages = []
        while True:
            if self._length is None:
                if len(self._buffer) < FRAME_HEADER_SIZE:
                    return messages
                self._length = _check_frame_header(bytes(self._buffer[:FRAME_HEADER_SIZE]), self.max_bytes)
                del self._buffer[:FRAME_HEADER_SIZE]
            if len(self._buffer) < self._length:
                return messages
            with memoryview(self._buffer) as view:
                messages.append(bytes(view[: self._length]))  # one copy, not two
            del self._buffer[: self._length]
            self._length = None
