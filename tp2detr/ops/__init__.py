"""Compiled 1-D multi-scale deformable attention (C++ for CPU, CUDA for GPU) as op backends.

Backends. ``register_compiled_backends`` adds ``"cpp"`` (CPU) and, when the build has the CUDA
kernels, ``"cuda"`` to the registry of :mod:`tp2detr.ops.registry`; importing this package installs
``register_compiled_backends`` as the registry's provider, which ``resolve_backend`` calls lazily,
so nothing is compiled until an op needs it. The PyTorch implementation is
:mod:`tp2detr.ops.reference`.

Policy for ``backend="auto"`` (read from ``$TP2DETR_BUILD_OPS`` once per process and value):
    unset / ``"0"``: never use the compiled op (the default, so that a fresh clone never
        compiles and every run is reproducible without a toolchain: see ops/README.md).
    ``"prebuilt"``: use the compiled op only if it is already built (``python -m tp2detr.ops build``).
    ``"1"``: build on first use (tens of seconds once), fall back with one warning if that fails.
Asking for ``"cpp"`` or ``"cuda"`` by name always builds if needed and raises ``OpBuildError``
(with the compiler's message) if that fails.
"""

from __future__ import annotations

import functools
import logging
import os

from tp2detr.ops.build import OpBuildError, cuda_toolkit_available, is_built, load_extension
from tp2detr.ops.functions import MSDeformAttn1DFunction, ms_deform_attn_1d_compiled
from tp2detr.ops.library import bind_extension
from tp2detr.ops.registry import available_backends, register_backend, set_compiled_provider

logger = logging.getLogger(__name__)

BUILD_ENV = "TP2DETR_BUILD_OPS"
COMPILED_BACKENDS = {"cpp": ("cpu",), "cuda": ("cuda",)}

__all__ = [
    "BUILD_ENV",
    "COMPILED_BACKENDS",
    "MSDeformAttn1DFunction",
    "OpBuildError",
    "auto_policy",
    "load_extension",
    "ms_deform_attn_1d_compiled",
    "register_compiled_backends",
]


def auto_policy() -> str:
    """``"prebuilt"``, ``"build"`` or ``"off"``: what ``backend="auto"`` may do (see module doc)."""
    setting = os.environ.get(BUILD_ENV, "").strip().lower()
    if setting in ("1", "true", "yes", "build"):
        return "build"
    if setting in ("", "0", "false", "no", "off"):
        return "off"
    if setting == "prebuilt":
        return "prebuilt"
    raise ValueError(f"${BUILD_ENV}: expected 1, 0 or prebuilt, found {setting!r}")


def _register(module) -> list[str]:
    bind_extension(module)
    names = ["cpp"] + (["cuda"] if module.with_cuda() else [])
    present = available_backends()
    for name in names:
        if name not in present:
            register_backend(name, functools.partial(ms_deform_attn_1d_compiled, module), COMPILED_BACKENDS[name])
    return names


@functools.lru_cache(maxsize=None)
def _register_for_auto(policy: str) -> tuple[str, ...]:
    if policy == "off":
        return ()
    with_cuda = cuda_toolkit_available()
    if policy == "prebuilt" and not is_built(with_cuda):
        logger.info(
            "deformable attention: the compiled op is not built; 'auto' uses the PyTorch fallback "
            "(build it with `python -m tp2detr.ops build` or set %s=1)", BUILD_ENV,
        )
        return ()
    module = load_extension(with_cuda, required=False)
    return tuple(_register(module)) if module is not None else ()


def register_compiled_backends(requested: str | None = None) -> list[str]:
    """Register the compiled backends with ``tp2detr.models.deform_attn``.

    Args:
        requested: None for ``backend="auto"`` (follows ``auto_policy()``, never raises for a
            failed build), or ``"cpp"`` / ``"cuda"`` (builds if needed; errors are raised).

    Returns:
        The compiled backend names now registered by this package.

    Raises:
        OpBuildError: a backend asked for by name cannot be built or is not in this build.
    """
    if requested is None:
        return list(_register_for_auto(auto_policy()))
    if requested not in COMPILED_BACKENDS:
        raise ValueError(f"requested: expected one of {sorted(COMPILED_BACKENDS)}, found {requested!r}")
    if requested == "cuda" and not cuda_toolkit_available():
        raise OpBuildError(
            "backend 'cuda' needs a CUDA build of torch, a visible GPU and a CUDA toolkit (CUDA_HOME); "
            "found torch.version.cuda="
            f"{__import__('torch').version.cuda!r}, and no usable GPU or toolkit"
        )
    module = load_extension(None, required=True)
    names = _register(module)
    if requested not in names:
        raise OpBuildError(f"backend {requested!r}: the compiled op was built without it (has {names})")
    return names


set_compiled_provider(register_compiled_backends)
