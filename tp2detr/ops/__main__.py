"""``python -m tp2detr.ops build|check-nvcc|info``: build the compiled op ahead of time, compile-check
the CUDA sources with nvcc (no GPU needed), or show where the build lives."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from tp2detr.ops.build import OpBuildError, build_spec, cuda_toolkit_available, is_built, load_extension, nvcc_compile_check


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tp2detr.ops", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="compile the op into the cache folder (CUDA kernels when available)")
    build.add_argument("--cpu-only", action="store_true", help="skip the CUDA kernels")
    build.add_argument("--verbose", action="store_true", help="stream the compiler's output")
    check = sub.add_parser("check-nvcc", help="compile the .cu sources to objects with nvcc -c")
    check.add_argument("--arch", default="90", help="SM architecture, e.g. 90 for H100")
    sub.add_parser("info", help="print the cache folder and whether the op is built")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    with_cuda = cuda_toolkit_available()
    if args.command == "build":
        with_cuda = with_cuda and not args.cpu_only
        started = time.perf_counter()
        try:
            module = load_extension(with_cuda, required=True, verbose=args.verbose)
        except OpBuildError as error:
            print(error, file=sys.stderr)
            return 1
        print(f"built in {time.perf_counter() - started:.1f} s (cuda kernels: {module.with_cuda()}): "
              f"{build_spec(with_cuda)['build_directory']}")
        return 0
    if args.command == "check-nvcc":
        with tempfile.TemporaryDirectory() as work:
            started = time.perf_counter()
            try:
                objects = nvcc_compile_check(Path(work), arch=args.arch)
            except OpBuildError as error:
                print(error, file=sys.stderr)
                return 1
            print(f"nvcc compiled {[o.name for o in objects]} for sm_{args.arch} in {time.perf_counter() - started:.1f} s")
        return 0
    print(f"cuda kernels: {with_cuda}; built: {is_built(with_cuda)}; folder: {build_spec(with_cuda)['build_directory']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
