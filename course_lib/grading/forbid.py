"""Refuse shortcuts inside a graded answer: "write it yourself" enforced, and explained.

Two mechanisms, because shortcuts come in two kinds:

* PyTorch operators. Whether a student writes ``F.conv2d``, ``nn.Conv2d``,
  ``torch.conv2d`` or ``torch.ops.aten.convolution``, every one of them ends in
  the same ATen operator. A ``TorchDispatchMode`` sees each ATen call however it
  was reached, so matching operator names there cannot be side-stepped by an
  import alias.
* Python functions (``course_lib``'s own reference solutions). A profile hook
  compares the code object of every Python call, which also catches a function
  imported under another name.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager

from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["ForbiddenCallError", "forbid_calls", "CONVOLUTION_OPS"]

# ATen operators that compute a convolution (or im2col, which is half of one),
# mapped to the public names a student is likely to have called.
CONVOLUTION_OPS: Mapping[str, str] = {
    "convolution": "torch.nn.functional.conv1d/conv2d/conv_transpose2d or nn.Conv2d",
    "_convolution": "torch._convolution",
    "conv2d": "torch.conv2d",
    "cudnn_convolution": "a cuDNN convolution",
    "mkldnn_convolution": "a oneDNN convolution",
    "_slow_conv2d_forward": "a built-in convolution",
    "slow_conv_dilated2d": "a built-in convolution",
    "im2col": "torch.nn.functional.unfold (im2col)",
    "col2im": "torch.nn.functional.fold (col2im)",
}


class ForbiddenCallError(AssertionError):
    """A graded answer called something the exercise asks the student to write."""


class _RefuseOps(TorchDispatchMode):
    def __init__(self, ops: Mapping[str, str], why: str):
        super().__init__()
        self.ops, self.why = ops, why

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in self.ops:
            raise ForbiddenCallError(f"your code called {self.ops[name]} (ATen operator aten::{name}). {self.why}")
        return func(*args, **(kwargs or {}))


@contextmanager
def forbid_calls(
    *,
    ops: Mapping[str, str] = CONVOLUTION_OPS,
    functions: Iterable[Callable] = (),
    why: str = "This exercise asks you to compute it yourself: remove that call.",
):
    """Run the enclosed code with ``ops`` (ATen names) and ``functions`` refused.

    Any call raises :class:`ForbiddenCallError` with a message naming what was
    called and ``why`` it is not allowed. Usage::

        with forbid_calls(functions=[course_lib.layers.functional.conv2d]):
            out = student_conv2d(x, w)
    """
    codes = {f.__code__: f"{f.__module__}.{f.__qualname__}" for f in functions}
    previous = sys.getprofile()

    def profiler(frame, event, arg):
        if event == "call" and frame.f_code in codes:
            raise ForbiddenCallError(f"your code called {codes[frame.f_code]}. {why}")

    if codes:
        sys.setprofile(profiler)
    try:
        with _RefuseOps(ops, why):
            yield
    finally:
        if codes:
            sys.setprofile(previous)
