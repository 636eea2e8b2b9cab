"""BLAS/OpenMP thread pinning: implicit's fits are up to 10x slower when BLAS runs its own threads."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager

from threadpoolctl import threadpool_limits

BLAS_ENV_VARS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
OPENMP_ENV_VARS = ("OMP_NUM_THREADS",)


def pin_env_threads(n: int = 1, *, openmp: bool = False) -> None:
    """Set BLAS (and optionally OpenMP) thread variables; effective for libraries loaded afterwards.

    Training keeps OpenMP free because implicit parallelises its own loops with it; API workers pin
    both, since parallelism comes from processes there.
    """
    for name in BLAS_ENV_VARS + (OPENMP_ENV_VARS if openmp else ()):
        os.environ.setdefault(name, str(n))


def limit_blas_threads(n: int = 1) -> AbstractContextManager:
    """Limit already-loaded BLAS libraries to ``n`` threads for the duration of a block."""
    return threadpool_limits(limits=n, user_api="blas")
