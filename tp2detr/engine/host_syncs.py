"""Count, on CPU, the host synchronisations a piece of code would make on a GPU (a diagnostic:
``tests/engine/test_loss_check.py`` pins a training step's count, ``scripts/bench_step_ops.py``
records it).

On a GPU a synchronisation happens whenever the host needs a value the device computed: reading
it (``item``, ``tolist``, ``bool(t)``, ``float(t)``, ``numpy``), copying it to the host (``cpu``,
``to("cpu")``), or an operation whose output size depends on the data (``nonzero``, boolean-mask
indexing, ``masked_select``, ``unique``). On CPU nothing is on a device, so
:class:`HostSyncCounter` keeps track of which tensors *would be*: the ones marked as such (a
model's parameters, a batch after its transfer) and everything computed from them. A read of such
a tensor counts as one synchronisation; the copy it makes (``cpu()``) is a host tensor, free to
read afterwards. Tensors a factory makes with an explicit ``device=`` (a ``torch.device``, as in
``device=x.device``) count as on the device too.

Copies the other way synchronise as well: a host-to-device copy without ``non_blocking=True``
waits for the device's queue (torch copies, then synchronises the stream). Counted as such:
``torch.tensor`` / ``as_tensor`` of host data with an explicit ``device=``, and ``to(device)`` of
a host tensor (to a ``torch.device``; not with ``non_blocking=True``, whose result still counts
as on the device). Autograd's backward runs in C++ and is not seen (it makes no such reads).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
import traceback

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

_READS = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "cpu"}
_DATA_DEPENDENT = {"nonzero", "masked_select", "unique", "unique_consecutive", "argwhere"}
_FROM_HOST_DATA = {"tensor", "as_tensor"}
_FACTORIES = {"tensor", "as_tensor", "zeros", "ones", "empty", "full", "arange", "linspace", "rand", "randn",
              "randint", "eye"}
_MARK = "_on_device_in_a_gpu_run"


def _tensors(values) -> list[torch.Tensor]:
    return [value for value in tree_flatten(values)[0] if isinstance(value, torch.Tensor)]


def mark_on_device(tensors: Iterable[torch.Tensor]) -> None:
    """Treat ``tensors`` as device-resident (e.g. ``model.parameters()``, a batch's tensors)."""
    for tensor in tensors:
        setattr(tensor, _MARK, True)


def on_device(tensor: torch.Tensor) -> bool:
    return bool(getattr(tensor, _MARK, False))


class HostSyncCounter(TorchFunctionMode):
    """``with HostSyncCounter() as counter: ...``; then ``counter.count`` and ``counter.sites``
    (a Counter of ``(operation, "file:line in function")`` of the code that synchronised)."""

    def __init__(self) -> None:
        super().__init__()
        self.sites: Counter[tuple[str, str]] = Counter()

    @property
    def count(self) -> int:
        return sum(self.sites.values())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        inputs = _tensors((args, kwargs))
        from_device = any(on_device(tensor) for tensor in inputs)
        syncs = from_device and (
            name in _READS
            or name in _DATA_DEPENDENT
            or (name == "__getitem__" and any(t.dtype == torch.bool for t in _tensors(args[1:])))
        )
        explicit_device = isinstance(kwargs.get("device"), torch.device)
        to_device = name == "to" and not from_device and _device_target(args, kwargs)
        if name in _FROM_HOST_DATA and explicit_device and not from_device:
            syncs = True  # host data copied to the device synchronously
        if to_device and not kwargs.get("non_blocking", False):
            syncs = True
        if syncs:
            self.sites[(name, _caller())] += 1
        result = func(*args, **kwargs)
        if name == "cpu" and syncs:
            # The copy is a host tensor (on CPU cpu() returns the input itself: copy to tell them apart).
            return result.clone() if isinstance(result, torch.Tensor) and result is args[0] else result
        # On the device in a GPU run: what a transfer or a factory with an explicit device
        # (``device=x.device``) makes, and whatever is computed from device tensors except the
        # values read back. Factories without a device (or with the string "cpu") make host tensors.
        if to_device or (name in _FACTORIES and explicit_device) or (from_device and name not in _READS):
            mark_on_device(_tensors(result))
        return result


def _device_target(args, kwargs) -> bool:
    """Whether a ``to(...)`` call names a device as a ``torch.device`` (where the model's tensors
    go; a string such as ``"cpu"`` names the host)."""
    return any(isinstance(value, torch.device) for value in (*args[1:], kwargs.get("device")))


def _caller() -> str:
    frames = [f for f in traceback.extract_stack()
              if "/tp2detr/" in f.filename and "site-packages" not in f.filename and f.filename != __file__]
    frame = frames[-1] if frames else traceback.extract_stack()[-3]
    return f"{frame.filename.split('/tp2detr/')[-1]}:{frame.lineno} in {frame.name}"
