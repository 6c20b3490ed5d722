"""The fused CUDA kernels (probcon_ref/cupy/fused.cu), built for the host and run on NumPy arrays.

Every kernel loop is grid-stride, so with a grid and a block of one thread the same source
is an ordinary C++ function over the whole array. A short prelude supplies what CUDA would
(``__global__``, ``__device__``, ``blockIdx``, ...) and ``<cmath>``'s overloads; the
library is compiled with ``-ffp-contract=off`` so that each operation is rounded as written.

:func:`host_launcher` returns a launcher with the signature of
:class:`probcon_ref.cupy.CupyLauncher`, so :class:`probcon_ref.cupy.FusedSteps` runs
unchanged on NumPy arrays: the test then compares the fused path, Python and kernels
together, with the reference.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np

from probcon_ref import cupy as _fused

PRELUDE = """
#include <cmath>
using namespace std;
struct probcon_dim3 { unsigned x, y, z; };
static const probcon_dim3 blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0};
static const probcon_dim3 blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
#define __global__
#define __device__ static
"""


def compiler() -> str | None:
    """The host C++ compiler, or ``None``."""
    return shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


@lru_cache(maxsize=None)
def build(real: str, folder: str) -> ctypes.CDLL:
    """Compile ``fused.cu`` with ``REAL=real`` into a shared library in ``folder``."""
    src = Path(folder) / f"fused_{real}.cpp"
    lib = Path(folder) / f"fused_{real}.so"
    src.write_text(PRELUDE + f"#define REAL {real}\n" + _fused.kernel_source(), encoding="utf-8")
    cmd = [compiler(), "-O2", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off", "-Wall", "-Werror",
           str(src), "-o", str(lib)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"host build of fused.cu failed:\n{done.stderr}")
    return ctypes.CDLL(str(lib))


def _c_arg(a, real: str):
    if isinstance(a, np.ndarray):
        want = np.float64 if real == "double" else np.float32
        if a.dtype != want:
            raise TypeError(f"array of {a.dtype} passed to a kernel built for {real}")
        if not a.flags.c_contiguous:
            raise ValueError("kernel arguments must be C-contiguous")
        return ctypes.c_void_p(a.ctypes.data)
    if isinstance(a, np.int64):
        return ctypes.c_longlong(int(a))
    if isinstance(a, np.int32):
        return ctypes.c_int(int(a))
    if isinstance(a, np.float64):
        if real != "double":
            raise TypeError("a double scalar passed to a float kernel")
        return ctypes.c_double(float(a))
    if isinstance(a, np.float32):
        if real != "float":
            raise TypeError("a float scalar passed to a double kernel")
        return ctypes.c_float(float(a))
    raise TypeError(f"unexpected kernel argument {type(a).__name__}")


def host_launcher(folder: Path):
    """A launcher running the host build of each kernel (grid and block are ignored)."""
    launched: list[str] = []

    def launch(name: str, real: str, grid: tuple, block: tuple, args: tuple) -> None:
        if not all(isinstance(g, int) and g >= 1 for g in (*grid, *block)):
            raise ValueError(f"{name}: bad launch configuration grid={grid} block={block}")
        _fused.check_arguments(name, real, args, lambda a: isinstance(a, np.ndarray))
        fn = getattr(build(real, str(folder)), name)
        fn.restype = None
        fn(*[_c_arg(a, real) for a in args])
        launched.append(name)

    launch.launched = launched
    return launch
