"""JIT build and loading of the compiled deformable-attention op (``ops/csrc``).

The extension is compiled with ``torch.utils.cpp_extension.load`` and ninja into a cache folder
``<cache root>/<torch version>-<cpu|cuda>-<hash of sources and flags>`` (cache root:
``$TP2DETR_OPS_CACHE``, else ``~/.cache/tp2detr/ops``), so a build is reused until a source, a flag
or the torch version changes. The CUDA kernels are compiled in when torch is a CUDA build and a CUDA
toolkit is found (``CUDA_HOME``); the CPU kernels always are.

``load_extension(required=False)`` logs one warning and returns None when the build fails;
``required=True`` raises ``OpBuildError`` carrying the compiler's message. The outcome is memoised
per process and build folder (``functools.lru_cache``), so a failed build is tried once.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import shutil
import time
from pathlib import Path
from types import ModuleType

import torch

from tp2detr.errors import TP2DETRError

logger = logging.getLogger(__name__)

CSRC_DIR = Path(__file__).resolve().parents[2] / "ops" / "csrc"
EXTENSION_NAME = "tp2detr_ms_deform_attn_1d"
CPP_SOURCES = ("ms_deform_attn_1d_bindings.cpp", "ms_deform_attn_1d_cpu.cpp")
CUDA_SOURCES = ("ms_deform_attn_1d_cuda.cu",)
CPP_HEADERS = ("ms_deform_attn_1d.h", "ms_deform_attn_1d_cpu_avx2.h")
CUDA_HEADERS = ("ms_deform_attn_1d_kernels.cuh",)


class OpBuildError(TP2DETRError, RuntimeError):
    """The compiled op could not be built or loaded; the message holds the compiler's output."""


def cache_root() -> Path:
    """The folder that holds every build: ``$TP2DETR_OPS_CACHE`` or ``~/.cache/tp2detr/ops``."""
    configured = os.environ.get("TP2DETR_OPS_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "tp2detr" / "ops"


def cuda_toolkit_available() -> bool:
    """True when torch is a CUDA build, a GPU is visible and a CUDA toolkit (nvcc) is found."""
    from torch.utils.cpp_extension import CUDA_HOME

    return bool(torch.version.cuda) and torch.cuda.is_available() and CUDA_HOME is not None


def _cpu_flags() -> list[str]:
    # -fopenmp: ``at::parallel_for`` is a header template whose ``#pragma omp parallel`` is
    # compiled into this extension; without the flag the pragma is ignored and every kernel runs
    # on one thread. The GOMP symbols bind to the libgomp that torch has already loaded.
    flags = ["-O3", "-fopenmp"]
    if platform.machine() in ("x86_64", "AMD64"):
        try:
            cpu_flags = Path("/proc/cpuinfo").read_text().split()
        except OSError:
            cpu_flags = []
        if "avx2" in cpu_flags and "fma" in cpu_flags:
            flags += ["-mavx2", "-mfma"]
    return flags


def _cuda_flags() -> list[str]:
    flags = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        flags.append(f"-gencode=arch=compute_{major}{minor},code=sm_{major}{minor}")
    return flags


def build_spec(with_cuda: bool) -> dict:
    """Sources, flags and the cache folder of one build variant (the folder name hashes them all)."""
    names = CPP_SOURCES + (CUDA_SOURCES if with_cuda else ())
    sources = [CSRC_DIR / name for name in names]
    cflags = _cpu_flags() + (["-DTP2DETR_WITH_CUDA"] if with_cuda else [])
    cuda_cflags = _cuda_flags() + ["-DTP2DETR_WITH_CUDA"] if with_cuda else []
    digest = hashlib.sha256()
    headers = CPP_HEADERS + (CUDA_HEADERS if with_cuda else ())
    for path in [*sources, *(CSRC_DIR / name for name in headers)]:
        if not path.is_file():
            raise OpBuildError(f"compiled op: source file {path} is missing")
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(" ".join(cflags + cuda_cflags).encode())
    variant = "cuda" if with_cuda else "cpu"
    folder = cache_root() / f"{torch.__version__}-{variant}-{digest.hexdigest()[:16]}"
    return {
        "name": f"{EXTENSION_NAME}_{variant}",
        "sources": [str(path) for path in sources],
        "extra_cflags": cflags,
        "extra_cuda_cflags": cuda_cflags,
        "build_directory": folder,
    }


def is_built(with_cuda: bool | None = None) -> bool:
    """True when the shared library of the variant is already in the cache (no compile needed)."""
    if with_cuda is None:
        with_cuda = cuda_toolkit_available()
    try:
        spec = build_spec(with_cuda)
    except OpBuildError:
        return False
    return any(spec["build_directory"].glob(f"{spec['name']}*.so"))


@functools.lru_cache(maxsize=None)
def _load(
    name: str,
    sources: tuple[str, ...],
    cflags: tuple[str, ...],
    cuda_cflags: tuple[str, ...],
    folder: Path,
    with_cuda: bool,
    verbose: bool,
) -> tuple[ModuleType | None, str]:
    """(module, "") or (None, error message); memoised per build folder, so a failure is tried once."""
    from torch.utils import cpp_extension

    try:
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        module = cpp_extension.load(
            name=name,
            sources=list(sources),
            extra_cflags=list(cflags),
            extra_cuda_cflags=list(cuda_cflags) or None,
            extra_include_paths=[str(Path(sources[0]).parent)],
            build_directory=str(folder),
            with_cuda=with_cuda,
            verbose=verbose,
        )
    except Exception as error:  # the builder raises RuntimeError, OSError, ImportError, ...
        return None, f"{type(error).__name__}: {error}"
    logger.info(
        "compiled deformable-attention op (%s) ready in %.1f s from %s",
        "cpu+cuda" if with_cuda else "cpu", time.perf_counter() - started, folder,
    )
    return module, ""


def load_extension(
    with_cuda: bool | None = None, *, required: bool = False, verbose: bool = False
) -> ModuleType | None:
    """Build (if needed) and import the compiled op.

    Args:
        with_cuda: compile the CUDA kernels too; None = when ``cuda_toolkit_available()``.
        required: raise ``OpBuildError`` (with the compiler's message) instead of returning None.
        verbose: stream the compiler's output.

    Returns:
        The extension module (functions ``forward``, ``backward``, ``with_cuda``) or None.
    """
    if with_cuda is None:
        with_cuda = cuda_toolkit_available()
    try:
        spec = build_spec(bool(with_cuda))
    except OpBuildError as error:
        module, message = None, str(error)
    else:
        module, message = _load(
            spec["name"], tuple(spec["sources"]), tuple(spec["extra_cflags"]),
            tuple(spec["extra_cuda_cflags"]), spec["build_directory"], bool(with_cuda), bool(verbose),
        )
    if module is not None:
        return module
    if required:
        raise OpBuildError(f"building the compiled deformable-attention op failed: {message}")
    first_line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    logger.warning(
        "the compiled deformable-attention op could not be built (%s); using the PyTorch fallback. "
        "Run `python -m tp2detr.ops build` to see the compiler's full message.",
        first_line,
    )
    return None


def nvcc_compile_check(work_dir: Path, arch: str = "90", nvcc: str | None = None) -> list[Path]:
    """Compile every ``.cu`` source to an object with ``nvcc -c`` (no link, no GPU needed).

    Works with a CPU-only torch wheel: the generated header ``c10/cuda/impl/cuda_cmake_macros.h``
    that such a wheel lacks is supplied as an empty shim in ``work_dir``.

    Args:
        work_dir: folder for the shim header and the objects.
        arch: SM architecture, e.g. ``"90"`` (H100).
        nvcc: the compiler; None = ``nvcc`` on the PATH or under ``$CUDA_HOME/bin``.

    Returns:
        The object files written.

    Raises:
        OpBuildError: nvcc is missing or a source does not compile (the message holds nvcc's output).
    """
    import subprocess
    import sysconfig

    compiler = nvcc or shutil.which("nvcc") or shutil.which(
        str(Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "nvcc")
    )
    if compiler is None:
        raise OpBuildError("nvcc compile check: nvcc was not found on the PATH or under $CUDA_HOME/bin")
    work_dir = Path(work_dir)
    shim = work_dir / "shim" / "c10" / "cuda" / "impl"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "cuda_cmake_macros.h").write_text("#pragma once\n")
    torch_include = Path(torch.__file__).resolve().parent / "include"
    objects = []
    for name in CUDA_SOURCES:
        target = work_dir / (Path(name).stem + ".o")
        command = [
            compiler, "-c", str(CSRC_DIR / name), "-o", str(target), "-std=c++17",
            f"-I{CSRC_DIR}", f"-I{work_dir / 'shim'}", f"-I{torch_include}",
            f"-I{torch_include / 'torch' / 'csrc' / 'api' / 'include'}",
            f"-I{sysconfig.get_paths()['include']}",
            f"-D_GLIBCXX_USE_CXX11_ABI={int(torch.compiled_with_cxx11_abi())}",
            "-DTP2DETR_WITH_CUDA", "--expt-relaxed-constexpr",
            f"-gencode=arch=compute_{arch},code=sm_{arch}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise OpBuildError(
                f"nvcc compile check of {name} failed (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        objects.append(target)
    return objects
