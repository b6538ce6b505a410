"""Refuse shortcuts inside a graded answer: "write it yourself" enforced, and explained.

Two mechanisms, because shortcuts come in two kinds:

* PyTorch operators. Whether a student writes ``F.conv2d``, ``nn.Conv2d``,
  ``torch.conv2d`` or ``torch.ops.aten.convolution``, every one of them ends in
  the same ATen operator. A ``TorchDispatchMode`` sees each ATen call however it
  was reached, so matching operator names there cannot be side-stepped by an
  import alias.
* Python functions (``course_lib``'s own reference solutions). While the
  context is active, each forbidden function's code is swapped for code that
  refuses: the function object is the same under every name it was imported
  as, so an alias is refused too, on every call.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager, nullcontext

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


# id(refusing code object) -> message; a refusing code object exists only inside forbid_calls.
_REFUSALS: dict[int, str] = {}


def _refuse(*args, **kwargs):
    # This body runs as the forbidden function's code, so with *that* function's
    # module globals: it reaches back here through __import__, a builtin every module sees.
    __import__("course_lib.grading.forbid", fromlist=["_raise_refusal"])._raise_refusal()


def _raise_refusal():
    raise ForbiddenCallError(_REFUSALS[id(sys._getframe(1).f_code)])


@contextmanager
def _refuse_functions(functions: Iterable[Callable], why: str):
    """Swap each function's ``__code__`` for a refusal, and restore it afterwards."""
    swapped = []
    try:
        for function in functions:
            # A decorated function (course_lib's accepts_unbatched) calls the one it wraps: refuse that one.
            function = inspect.unwrap(function)
            if function.__closure__:
                raise ValueError(f"functions must be module-level functions, got the closure {function.__qualname__}")
            code = _refuse.__code__.replace(co_name=function.__name__)
            _REFUSALS[id(code)] = f"your code called {function.__module__}.{function.__qualname__}. {why}"
            swapped.append((function, function.__code__, code))
            function.__code__ = code
        yield
    finally:
        for function, original, code in swapped:
            function.__code__ = original
            _REFUSALS.pop(id(code), None)


@contextmanager
def forbid_calls(
    *,
    ops: Mapping[str, str] = CONVOLUTION_OPS,
    functions: Iterable[Callable] = (),
    why: str = "This exercise asks you to compute it yourself: remove that call.",
):
    """Run the enclosed code with ``ops`` (ATen names) and ``functions`` refused.

    Any call raises :class:`ForbiddenCallError` with a message naming what was
    called and ``why`` it is not allowed; ``ops={}`` refuses functions only. Usage::

        with forbid_calls(functions=[course_lib.layers.functional.conv2d]):
            out = student_conv2d(x, w)
    """
    # No operator to refuse, no dispatch mode: it would see every ATen call and slow training by half.
    with _refuse_functions(functions, why), (_RefuseOps(ops, why) if ops else nullcontext()):
        yield
