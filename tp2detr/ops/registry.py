"""The backend registry of the deformable sampling op: ``ms_deform_attn_1d`` dispatches to a
named backend.

``"pytorch"`` (:func:`tp2detr.ops.reference.ms_deform_attn_1d_pytorch`, always present) runs on any
device. A compiled op (C++/CUDA) plugs in with ``register_backend(name, fn, device_types)`` behind
the same signature; ``backend="auto"`` then picks the first registered compiled backend that
supports the value tensor's device type, else ``"pytorch"``. The registry is the module-level dict
``_BACKENDS``; it is the only mutable state here and changes only through ``register_backend`` /
``unregister_backend``.

Compiled backends ``"cpp"`` (CPU) and ``"cuda"`` come from :mod:`tp2detr.ops` and are registered
lazily by ``resolve_backend``: asking for one by name builds it if needed (an error if that fails);
``"auto"`` uses them only when already built or when ``$TP2DETR_BUILD_OPS=1`` (policy in
``tp2detr.ops``), so "auto" never starts a compile on a fresh clone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from torch import Tensor

from tp2detr.ops.reference import DeformAttnFn, ms_deform_attn_1d_pytorch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Backend:
    fn: DeformAttnFn
    device_types: frozenset[str]  # device types that "auto" may pick it for; empty = any device
    compiled: bool


_BACKENDS: dict[str, _Backend] = {
    "pytorch": _Backend(fn=ms_deform_attn_1d_pytorch, device_types=frozenset(), compiled=False),
}


def register_backend(name: str, fn: DeformAttnFn, device_types: Iterable[str] = ("cuda",)) -> None:
    """Register a compiled implementation of the op under ``name``.

    ``fn`` takes the arguments of ``ms_deform_attn_1d_pytorch`` (value, level_lengths,
    level_start_index, sampling_locations, attention_weights) and returns ``[N, Lq, M·D]``.
    ``device_types`` lists the ``torch.device.type`` values it runs on (e.g. ``("cuda",)``).
    """
    if name in ("auto", "pytorch"):
        raise ValueError(f"register_backend: the name {name!r} is reserved")
    if name in _BACKENDS:
        raise ValueError(f"register_backend: a backend named {name!r} is already registered")
    if not callable(fn):
        raise ValueError(f"register_backend: fn for {name!r} must be callable, found {type(fn)!r}")
    types = frozenset(device_types)
    if not types:
        raise ValueError(f"register_backend: backend {name!r} must name at least one device type")
    _BACKENDS[name] = _Backend(fn=fn, device_types=types, compiled=True)
    logger.info("registered deformable-attention backend %r for %s", name, sorted(types))


def unregister_backend(name: str) -> None:
    """Remove a backend added with ``register_backend``."""
    backend = _BACKENDS.get(name)
    if backend is None or not backend.compiled:
        raise ValueError(
            f"unregister_backend: expected one of the registered compiled backends "
            f"{sorted(k for k, b in _BACKENDS.items() if b.compiled)}, found {name!r}"
        )
    del _BACKENDS[name]


def available_backends(device_type: str | None = None) -> list[str]:
    """Names of the registered backends (those that run on ``device_type`` when it is given)."""
    return [
        name
        for name, backend in _BACKENDS.items()
        if device_type is None or not backend.device_types or device_type in backend.device_types
    ]


COMPILED_BACKEND_NAMES = ("cpp", "cuda")  # provided by tp2detr.ops, registered on first use

#: Called with ``None`` (for "auto") or a compiled backend's name before a backend is resolved;
#: ``tp2detr.ops`` installs it when imported (``set_compiled_provider``), so this module imports
#: nothing above itself.
_PROVIDER: list[Callable[[str | None], object]] = []


def set_compiled_provider(provide: Callable[[str | None], object]) -> None:
    """Install the function that registers compiled backends on demand (``tp2detr.ops`` does)."""
    _PROVIDER[:] = [provide]


def _provide_compiled_backends(backend: str) -> None:
    """Let the installed provider register its compiled backends: for ``"auto"`` only as its policy
    allows (never raises), for ``"cpp"`` / ``"cuda"`` building them if needed (raises on failure)."""
    if _PROVIDER and (backend == "auto" or (backend in COMPILED_BACKEND_NAMES and backend not in _BACKENDS)):
        _PROVIDER[0](None if backend == "auto" else backend)


def require_backend(backend: str) -> None:
    """Make sure ``backend`` (``"auto"`` or a name) can be used: a compiled one is built or loaded
    now (a failed build raises here); an unknown name raises ``ValueError``."""
    if backend in COMPILED_BACKEND_NAMES:
        _provide_compiled_backends(backend)
    if backend != "auto" and backend not in _BACKENDS:
        raise ValueError(f"backend: expected 'auto' or one of {sorted(_BACKENDS)}, found {backend!r}")


def resolve_backend(backend: str, device_type: str) -> str:
    """The concrete backend name that ``backend`` means for a tensor on ``device_type``."""
    _provide_compiled_backends(backend)
    if backend == "auto":
        for name, entry in _BACKENDS.items():
            if entry.compiled and device_type in entry.device_types:
                return name
        return "pytorch"
    entry = _BACKENDS.get(backend)
    if entry is None:
        raise ValueError(
            f"backend: expected 'auto' or one of {sorted(_BACKENDS)}, found {backend!r}"
        )
    if entry.device_types and device_type not in entry.device_types:
        raise ValueError(
            f"backend: {backend!r} runs on {sorted(entry.device_types)}, "
            f"but the value tensor is on {device_type!r}"
        )
    return backend


def ms_deform_attn_1d(
    value: Tensor,
    level_lengths: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    backend: str = "pytorch",
) -> Tensor:
    """1-D multi-scale deformable sampling through the chosen backend.

    Same arguments and result as ``ms_deform_attn_1d_pytorch``: value ``[N, S, M, D]``,
    level_lengths / level_start_index ``[L]`` int64, sampling_locations and attention_weights
    ``[N, Lq, M, L, P]`` → ``[N, Lq, M·D]``. ``backend`` is a registered name or ``"auto"``.
    """
    name = resolve_backend(backend, value.device.type)
    return _BACKENDS[name].fn(value, level_lengths, level_start_index, sampling_locations, attention_weights)


