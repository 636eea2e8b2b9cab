"""The API processes of one host share the model's large arrays: one copy in memory, not one per worker."""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import redis

from service.infrastructure.model_files import SHARE_MIN_BYTES, share_arrays
from service.infrastructure.model_store import load_version
from tests.service_helpers import RETAIL_CSV, TrainedModel, served_api, train, wait_for
from training.publish import publish_model

pytest_plugins = ["tests.service_helpers"]


def mapped_file(array: np.ndarray) -> str | None:
    """The file an array (or the array it is a view of) maps, None for memory of its own."""
    while array is not None:
        if isinstance(array, np.memmap):
            return array.filename
        array = array.base
    return None


def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    return {"weights": rng.random((600, 600), dtype=np.float32), "popularity": np.arange(10, dtype=np.float32)}


def test_large_arrays_become_maps_of_one_file_per_version(tmp_path: Path) -> None:
    original = arrays()
    assert original["weights"].nbytes >= SHARE_MIN_BYTES > original["popularity"].nbytes
    first = share_arrays(original, "v1", str(tmp_path))
    second = share_arrays(arrays(), "v1", str(tmp_path))  # another worker loading the same version
    for shared in (first, second):
        assert mapped_file(shared["weights"]) == str(tmp_path / "v1.weights.npy")
        np.testing.assert_array_equal(shared["weights"], original["weights"])
        assert not isinstance(shared["popularity"], np.memmap), "small arrays stay in the process"
    first["weights"][0, 0] = -1.0  # copy-on-write: a write stays in the process that made it
    assert second["weights"][0, 0] == original["weights"][0, 0]
    assert sorted(os.listdir(tmp_path)) == ["v1.weights.npy"]
    share_arrays(arrays(), "v2", str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["v2.weights.npy"], "a new version's load removes the old files"
    assert share_arrays(original, "v3", None) is original


def test_a_file_that_does_not_hold_the_array_is_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    np.save(tmp_path / "v1.weights.npy", np.zeros((600, 600), dtype=np.float32))
    shared = share_arrays(arrays(), "v1", str(tmp_path))
    assert not isinstance(shared["weights"], np.memmap)
    np.testing.assert_array_equal(shared["weights"], arrays()["weights"])
    assert "does not hold" in caplog.text
    unusable = tmp_path / "a-file"
    unusable.write_text("not a directory")
    kept = share_arrays(arrays(), "v1", str(unusable))
    assert not any(isinstance(a, np.memmap) for a in kept.values())


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """The default algorithm on the sample: its dense EASE weights are above ``SHARE_MIN_BYTES``."""
    return train(RETAIL_CSV, "online-retail", "hybrid", tmp_path_factory.mktemp("hybrid") / "model")


def test_a_version_loaded_through_the_share_dir_answers_the_same(hybrid: TrainedModel, redis_client: redis.Redis,
                                                                  tmp_path: Path) -> None:
    publish_model(redis_client, hybrid.path)
    private = load_version(redis_client, hybrid.version)
    shared = load_version(redis_client, hybrid.version, str(tmp_path))
    assert mapped_file(shared.model.cf.weights) == str(tmp_path / f"{hybrid.version}.cf_weights.npy")
    assert mapped_file(private.model.cf.weights) is None
    history = hybrid.artifact.history
    np.testing.assert_array_equal(shared.model.score(history), private.model.score(history))


@pytest.mark.slow
def test_the_workers_of_tailor_serve_map_one_copy(hybrid: TrainedModel, redis_url: str, tmp_path: Path) -> None:
    """Every worker maps the same file; without ``TAILOR_MODEL_SHARE_DIR`` the server makes its own directory
    and removes it when it stops."""
    memory = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    orphan = Path(memory) / "tailor-models-999999999-left"  # its master is gone: removed at the next start
    orphan.mkdir(exist_ok=True)
    alive = Path(tempfile.mkdtemp(prefix=f"tailor-models-{os.getpid()}-", dir=memory))  # a running master's
    before = set(glob.glob(os.path.join(memory, "tailor-models-*")))
    given = tmp_path / "share"
    given.mkdir()
    weights_file = given / f"{hybrid.version}.cf_weights.npy"
    with served_api(redis_url, hybrid.path, tmp_path / "given.log", workers=3, TAILOR_MODEL_SHARE_DIR=str(given)):
        assert sorted(os.listdir(given)) == [weights_file.name]
        wait_for(lambda: _mapping(str(weights_file)) == 3, timeout=30, interval=0.2)
    assert weights_file.exists(), "a directory given by the operator is left as it is"
    with served_api(redis_url, hybrid.path, tmp_path / "made.log", workers=3):
        new = set(glob.glob(os.path.join(memory, "tailor-models-*"))) - before
        made = sorted(path for path in new if _made_by_our_server(path))  # not another test's server (xdist)
        assert not orphan.exists() and alive.exists()
        assert len(made) == 1, "the server made one share directory"
        path = os.path.join(made[0], weights_file.name)
        wait_for(lambda: _mapping(path) == 3, timeout=30, interval=0.2)
    assert not os.path.exists(made[0]), "the directory the server made is removed at exit"
    alive.rmdir()


def _made_by_our_server(share_dir: str) -> bool:
    """Whether the master named in ``share_dir`` is a child of this test process (``tailor serve`` runs
    gunicorn in its own process), so a server started by a test running beside this one is not counted."""
    pid = os.path.basename(share_dir).split("-")[2]
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid()


def _mapping(path: str) -> int:
    """How many processes map ``path`` (the server's workers; the master loads no model)."""
    count = 0
    for maps in glob.glob("/proc/[0-9]*/maps"):
        with contextlib.suppress(OSError):
            count += path in Path(maps).read_text()
    return count
