"""`--engine spark` on the shipped sample with ``local[2]``: the ALS artifact round trip, that artifact served by
the API, the batch export's CSV contract, and the one-line error without Java.

Without Java or pyspark these tests skip with the reason on a developer machine; in CI (``CI`` set) they fail
instead, because CI installs both (``.ci/run``, the ``dev`` extra).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from redis_state import keys
from scoring.artifact import data_end_day, read_artifact
from service.domain.customer import live_value, session_value
from tests.service_helpers import RETAIL_CSV, ApiClient, item_ids
from training.publish import publish_model
from training.spark_als import java_binary

pytest_plugins = ["tests.service_helpers"]
ROOT = Path(__file__).resolve().parent.parent


def _spark_missing() -> str | None:
    if java_binary() is None:
        return "no Java runtime (install openjdk-17-jre-headless)"
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install 'tailor[spark]')"
    return None


@pytest.fixture(scope="module")
def spark_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = _spark_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"Spark tests cannot run in CI: {missing}")
        pytest.skip(missing)
    from tailor.cli import main

    out = tmp_path_factory.mktemp("spark") / "model"
    assert main(["-q", "train", "--data", str(RETAIL_CSV), "--format", "online-retail", "--engine", "spark",
                 "--spark-master", "local[2]", "--factors", "16", "--iterations", "5", "--holdout-days", "30",
                 "--out", str(out)]) == 0
    return out


def test_spark_writes_the_als_artifact(spark_model: Path) -> None:
    artifact = read_artifact(spark_model, verify=True)
    manifest = artifact.manifest
    assert manifest["algorithm"] == "als" and manifest["params"]["factors"] == 16
    assert manifest["engine"]["name"] == "spark" and manifest["engine"]["master"] == "local[2]"
    assert manifest["evaluation"]["model"]["algorithm"] == "als"  # evaluated like every model
    assert artifact.model.item_factors.shape == (len(artifact.item_ids), 16)
    assert float(abs(artifact.model.item_factors).sum()) > 0
    assert artifact.popular["global"]["items"] and len(artifact.customer_ids) == 300


def test_spark_model_is_served_by_the_api(spark_model: Path, make_app, redis_client) -> None:
    publish_model(redis_client, spark_model)
    artifact = read_artifact(spark_model)
    api = ApiClient(make_app())
    customer = str(artifact.customer_ids[int(artifact.customers.orders.argmax())])
    response = api.get(f"/v1/customers/{customer}/recommendations?n=5")
    assert len(item_ids(response)) == 5
    assert response.get_json()["model_version"] == artifact.version


def test_spark_batch_export_keeps_the_csv_contract(spark_model: Path, tmp_path: Path, redis_url: str,
                                                   redis_client: redis.Redis) -> None:
    from tailor.cli import main

    artifact = read_artifact(spark_model)
    customers = [str(c) for c in artifact.customer_ids[:40]] + ["nobody"]
    (tmp_path / "ids.txt").write_text("\n".join(customers) + "\n")
    local, spark = tmp_path / "local.csv", tmp_path / "spark.csv"
    base = ["-q", "recommend", "--model", str(spark_model), "--customers", str(tmp_path / "ids.txt"), "--n", "5",
            "--exclude-purchased"]
    assert main([*base, "--output", str(local)]) == 0
    assert main([*base, "--output", str(spark), "--engine", "spark", "--spark-master", "local[2]"]) == 0
    rows = list(csv.reader(spark.open()))
    assert rows[0] == ["customer_id", "rank", "item_id", "score", "source"]
    assert {r[4] for r in rows[1:]} == {"personalized", "popular-fallback"}
    assert [r[0] for r in rows[1::5]] == customers  # every customer, in input order, n rows each
    # The same rows; scores equal up to float32 rounding (the Spark workers score other chunks of customers,
    # so BLAS may sum in another order and the sixth decimal can differ by one).
    expected = list(csv.reader(local.open()))
    assert [r[:3] + r[4:] for r in rows] == [r[:3] + r[4:] for r in expected]
    assert all(abs(float(a[3]) - float(b[3])) <= 2e-6 for a, b in zip(rows[1:], expected[1:], strict=True))
    # the service's deactivated items and its customers' events since training (--redis-url) are taken into
    # account on the executors as in one process
    victim, bought = rows[1][2], rows[7][2]
    redis_client.hset(keys.ITEM_OVERRIDES, victim, json.dumps({"active": False}))
    day = data_end_day(artifact.manifest) + 1
    redis_client.hset(keys.customer_live(customers[1]), "e1", live_value(bought, day, 1.0, None))
    redis_client.hset(keys.customer_session("nobody"), bought, session_value(day, "view"))
    with_redis = [*base, "--redis-url", redis_url]
    assert main([*with_redis, "--output", str(local)]) == 0
    assert main([*with_redis, "--output", str(spark), "--engine", "spark", "--spark-master", "local[2]"]) == 0
    rows, expected = list(csv.reader(spark.open())), list(csv.reader(local.open()))
    assert [r[:3] + r[4:] for r in rows] == [r[:3] + r[4:] for r in expected]
    assert victim not in {r[2] for r in rows} and [r[0] for r in rows[1::5]] == customers
    assert bought not in {r[2] for r in rows if r[0] in {customers[1], "nobody"}}
    assert {r[4] for r in rows if r[0] == "nobody"} == {"session"}


def test_no_java_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(Path(sys.executable).parent)  # python, but no java
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "tailor", "train", "--data", str(RETAIL_CSV), "--format",
                           "online-retail", "--engine", "spark", "--out", str(tmp_path / "m")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "tailor: error: --engine spark needs a Java runtime (17+): install openjdk-17-jre-headless or set JAVA_HOME"]


def test_evaluate_takes_the_spark_engine_for_als_only(capsys: pytest.CaptureFixture[str]) -> None:
    from tailor.cli import main

    assert main(["evaluate", "--data", str(RETAIL_CSV), "--format", "online-retail", "--engine", "spark",
                 "--algorithm", "item-knn"]) == 2
    assert capsys.readouterr().err.strip() == (
        "tailor: error: --engine spark fits ALS only (the artifact of --algorithm als), not item-knn")


def test_spark_reg_param_matches_implicit_on_the_average_customer_or_item() -> None:
    import numpy as np
    import scipy.sparse as sp

    from training.spark_als import spark_reg_param

    # 3 customers (one without purchases) x 4 items (one never bought): 6 pairs, 3 per buying customer,
    # 2 per bought item; Spark multiplies regParam by those counts, implicit does not.
    weighted = sp.csr_matrix(np.array([[1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=np.float32))
    assert spark_reg_param(12.0, weighted, "customer") == 12.0 / 3
    assert spark_reg_param(12.0, weighted, "item") == 12.0 / 2
    with pytest.raises(KeyError):
        spark_reg_param(12.0, weighted, "user")


def test_spark_ratings_clamp_or_shift_the_confidence() -> None:
    import numpy as np

    from training.spark_als import spark_ratings

    confidence = np.array([0.2, 0.9, 1.5, 4.0], dtype=np.float32)
    # clamp: Spark's confidence 1 + r equals ours above 1; all below 1 become 1.001
    assert np.allclose(1 + spark_ratings(confidence, "clamp"), [1.001, 1.001, 1.5, 4.0])
    # shift: 1 + r = confidence + 1, the order of every confidence kept
    assert np.allclose(1 + spark_ratings(confidence, "shift"), [1.2, 1.9, 2.5, 5.0])
    with pytest.raises(ValueError):
        spark_ratings(confidence, "scale")


def test_the_mapping_sweep_emulates_sparks_update_rule_exactly() -> None:
    """bench/spark_emulate.py chose the mapping: its half-step must be Spark's normal equations, solved."""
    import numpy as np
    import scipy.sparse as sp

    from bench.spark_emulate import _solve

    rng = np.random.default_rng(0)
    ratings = sp.random(30, 20, density=0.2, random_state=1, format="csr", dtype=np.float32)
    ratings.data = rng.uniform(0.01, 3, ratings.nnz).astype(np.float32)
    fixed = rng.standard_normal((20, 8)).astype(np.float32)
    reg_param, alpha = 0.3, 2.0
    solved = _solve(ratings, fixed, reg_param, alpha)
    for row in range(ratings.shape[0]):
        items = ratings.indices[ratings.indptr[row]:ratings.indptr[row + 1]]
        r = ratings.data[ratings.indptr[row]:ratings.indptr[row + 1]]
        if not len(items):
            assert not solved[row].any()
            continue
        # Spark: A = YtY + sum alpha*r y y^T + regParam * n I, b = sum (1 + alpha*r) y (ALS-WR)
        a = fixed.T.astype(np.float64) @ fixed + (fixed[items].T * (alpha * r)) @ fixed[items] \
            + reg_param * len(items) * np.eye(8)
        b = ((1 + alpha * r)[:, None] * fixed[items]).sum(axis=0)
        assert np.allclose(np.linalg.solve(a, b), solved[row], rtol=1e-3, atol=1e-4)
