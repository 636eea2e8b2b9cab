"""The model's large arrays shared by the API processes of one host, through one memory-mapped file each.

Every gunicorn worker loads the active version from Redis itself, after the fork, so without this each one
holds its own copy of the model: five copies of the 53 MB EASE matrix of the retail model, five of 1.6 GB at
20,000 items. ``share_arrays`` puts one copy in a directory (``TAILOR_MODEL_SHARE_DIR``, made in
``/dev/shm`` by ``service.gunicorn_conf``) that every worker maps.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import time

import numpy as np

log = logging.getLogger("tailor.store")

#: Model arrays at least this large are shared by the API processes of a host (``share_arrays``).
SHARE_MIN_BYTES = 1 << 20
#: A half-written file of another process is left alone this long before a sweep removes it.
_STALE_TMP_S = 300.0


def share_arrays(arrays: dict[str, np.ndarray], version: str, directory: str | None) -> dict[str, np.ndarray]:
    """``arrays`` with the large ones replaced by copy-on-write maps of one ``.npy`` file each in ``directory``.

    Every worker loads the model itself (from Redis, after the fork), so without this each one holds its own
    copy: five copies of the 53 MB EASE matrix of the retail model, five of 1.6 GB at 20,000 items. The first
    process to load a version writes its files (atomically: a temporary name, then a hard link) and every process
    maps them, so a host keeps one copy in the page cache. Copy-on-write (``mmap_mode="c"``): the arrays stay
    writable for libraries that ask for writable buffers (implicit's), and a write would only copy a page for
    that process. A mapped file must equal the array just read from Redis, else the array is kept as it is;
    so is everything when ``directory`` is None or unusable. Files of other versions are removed (a process
    still serving one keeps its mapping until it lets go)."""
    if not directory:
        return arrays
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", version)
    shared = dict(arrays)
    try:
        for name, array in arrays.items():
            if array.nbytes < SHARE_MIN_BYTES:
                continue
            path = os.path.join(directory, f"{stem}.{re.sub(r'[^A-Za-z0-9_]', '_', name)}.npy")
            if not os.path.exists(path):
                staging = os.path.join(directory, f".tmp-{os.getpid()}-{secrets.token_hex(4)}.npy")
                try:
                    np.save(staging, np.ascontiguousarray(array), allow_pickle=False)
                    with contextlib.suppress(FileExistsError):  # a link, not a rename: of two workers writing
                        os.link(staging, path)                   # at once, both map the first one's file
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(staging)
            mapped = np.load(path, mmap_mode="c", allow_pickle=False)
            if mapped.dtype == array.dtype and mapped.shape == array.shape and np.array_equal(mapped, array):
                shared[name] = mapped
            else:
                log.warning("shared model file %s does not hold %s of %s: kept in this process", path, name,
                            version)
        _sweep(directory, stem)
    except (OSError, ValueError) as exc:
        log.warning("could not share the arrays of model %s in %s (%s): each process keeps its own copy",
                    version, directory, exc)
    return shared


def _sweep(directory: str, stem: str) -> None:
    """Remove the files of every version but ``stem`` (and temporary files abandoned by dead writers)."""
    now = time.time()
    for entry in os.scandir(directory):
        if entry.name.startswith(f"{stem}."):
            continue
        if entry.name.startswith(".tmp-") and now - entry.stat().st_mtime < _STALE_TMP_S:
            continue
        if entry.name.endswith(".npy"):
            os.unlink(entry.path)
