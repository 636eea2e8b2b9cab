"""`tailor train --engine spark` and `tailor recommend --engine spark`: the ALS fit and the batch export on
Apache Spark, writing and reading the very artifact of ``--algorithm als``.

What stays the same as the default engine: the purchase log is read and cleaned by ``training.data`` (same
formats, same rules), the customer x item history and its confidence weighting come from
``training.matrix`` / ``scoring.models.weighting``, the extras (customer table, popular lists, embeddings)
from ``training.pipeline``. Only the factorisation runs on Spark: ``pyspark.ml.recommendation.ALS`` with
``implicitPrefs=True``. The artifact records ``algorithm: als`` (so ``tailor publish``, the service and
``tailor recommend`` load it as any ALS model: item factors, customers folded in at score time) and
``engine: spark`` with the Spark settings in the manifest.

Confidence mapping. Our ALS (implicit) uses the confidence c = alpha x w, where w is the weighted purchase
(``--weighting``, ``--half-life``) and alpha is ``--alpha``; Spark uses c = 1 + alpha_spark x r for a rating r,
never below 1 for a purchase, while 90 % of the Online Retail pairs have c < 1 (60-day time decay), which no
Spark rating can express. We pass r = c (``shift``: the order of all confidences kept; the first version's
``clamp``, r = max(c - 1, 1e-3), gave every c < 1 the same 1.001) with Spark's ``alpha`` = 3, i.e. Spark's
confidence 1 + 3c: the extra weight of the purchases over the unbought items is closer to implicit's than with
1 + c. Regularisation: Spark multiplies regParam by the number of ratings of each customer (item) it solves for
(ALS-WR), implicit does not; regParam = regularization / mean purchases per customer matches the two on an
average customer. Spark's alpha (3) and a regParam scale (1) were chosen among 9 mappings on Online Retail's
validation folds with ``bench/spark_parity.py --emulate`` and checked on Ta Feng's (docs/SCALING.md,
docs/BENCHMARKS.md 9.3.1); the manifest's ``engine`` records them.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scoring.history import PurchaseHistory
from scoring.models.factorization import SEED, ALSRecommender
from scoring.models.weighting import Weighting

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from training.batch import LiveRow

DEFAULT_MASTER = "local[*]"
REG_MAPPINGS = ("customer", "item")
DEFAULT_REG_MAPPING = "customer"


class SparkError(Exception):
    """Spark cannot run here (no Java, no pyspark, a bad master URL): one line for the user."""


def java_binary() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    return shutil.which("java")


def spark_session(master: str = DEFAULT_MASTER, app: str = "tailor") -> SparkSession:
    """A SparkSession on ``master`` (``local[*]``, ``local[2]``, ``spark://HOST:7077``, ``yarn``, ...)."""
    if java_binary() is None:
        raise SparkError("--engine spark needs a Java runtime (17+): install openjdk-17-jre-headless or set "
                         "JAVA_HOME")
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkError("--engine spark needs pyspark: pip install 'tailor[spark]'") from None
    # Python workers run this interpreter (with Tailor's dependencies) unless told otherwise.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    try:
        session = (SparkSession.builder.master(master).appName(app)
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
                .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                .config("spark.sql.shuffle.partitions", os.environ.get("TAILOR_SPARK_PARTITIONS", "8"))
                .config("spark.driver.memory", os.environ.get("TAILOR_SPARK_DRIVER_MEMORY", "4g"))
                .getOrCreate())
        session.sparkContext.setLogLevel(os.environ.get("TAILOR_SPARK_LOG_LEVEL", "ERROR"))
        if not session.sparkContext.getCheckpointDir():  # ALS cuts its lineage every 10 iterations with it
            session.sparkContext.setCheckpointDir(tempfile.mkdtemp(prefix="tailor-spark-checkpoints-"))
        return session
    except Exception as exc:  # py4j / JVM start-up errors carry long Java traces: keep the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SparkError(f"Spark did not start on {master}: {first}") from None


RATING_MAPPINGS = ("clamp", "shift")
DEFAULT_RATING_MAPPING = "shift"
DEFAULT_SPARK_ALPHA = 3.0
DEFAULT_REG_SCALE = 1.0


def spark_ratings(confidence: np.ndarray, mapping: str = DEFAULT_RATING_MAPPING) -> np.ndarray:
    """Our confidences c = alpha x w as Spark ratings r (Spark's alpha = 1, its confidence 1 + r).

    ``clamp``: r = max(c - 1, 1e-3), so 1 + r = c exactly where c > 1 and 1.001 below (every decayed purchase
    looks alike); ``shift``: r = c, so Spark's confidence is c + 1 and keeps the order of all confidences."""
    confidence = confidence.astype(np.float64)
    if mapping == "shift":
        return np.maximum(confidence, 1e-3)
    if mapping == "clamp":
        return np.maximum(confidence - 1.0, 1e-3)
    raise ValueError(f"rating mapping must be one of {', '.join(RATING_MAPPINGS)}, got {mapping!r}")


def spark_reg_param(regularization: float, weighted: sp.csr_matrix, mapping: str = "customer") -> float:
    """Spark's ``regParam`` for implicit's ``regularization``. Spark multiplies it by the number of ratings of
    the customer (item) being solved for; ``customer`` divides by the mean purchases per customer (the average
    customer gets implicit's penalty), ``item`` by the mean buyers per item (the average item does)."""
    rows = max(int((np.diff(weighted.indptr) > 0).sum()), 1)
    cols = max(int(np.count_nonzero(np.bincount(weighted.indices, minlength=weighted.shape[1]))), 1)
    per = {"customer": weighted.nnz / rows, "item": weighted.nnz / cols}[mapping]
    return regularization / max(per, 1.0)


class SparkALSRecommender(ALSRecommender):
    """``als`` whose fit runs on Spark; everything else (scoring, arrays, name) is ``ALSRecommender``'s.

    ``spark_alpha`` is Spark's ``alpha`` (its confidence 1 + spark_alpha x r), ``reg_scale`` multiplies the
    mapped ``regParam``: the mapping's free knobs, chosen on validation folds (docs/SCALING.md)."""

    def __init__(self, master: str = DEFAULT_MASTER, reg_mapping: str = DEFAULT_REG_MAPPING,
                 rating_mapping: str = DEFAULT_RATING_MAPPING, spark_alpha: float = DEFAULT_SPARK_ALPHA,
                 reg_scale: float = DEFAULT_REG_SCALE, **params: Any) -> None:
        super().__init__(**params)
        if reg_mapping not in REG_MAPPINGS:
            raise ValueError(f"reg_mapping must be one of {', '.join(REG_MAPPINGS)}, got {reg_mapping!r}")
        spark_ratings(np.ones(1), rating_mapping)  # checks the name
        self.master = master
        self.reg_mapping = reg_mapping
        self.rating_mapping = rating_mapping
        self.spark_alpha = float(spark_alpha)
        self.reg_scale = float(reg_scale)
        self.spark_params: dict[str, Any] = {}

    def spark_inputs(self, history: PurchaseHistory) -> tuple[sp.coo_matrix, float]:
        """The ratings Spark fits (customer x item, our confidences mapped) and its ``regParam``."""
        self.weighting = Weighting.fit(history, self.params["weighting"], self.params["half_life"])
        weighted = self._confidence(history)
        reg = spark_reg_param(float(self.params["regularization"]), weighted, self.reg_mapping) * self.reg_scale
        ratings = weighted.tocoo()
        ratings.data = spark_ratings(ratings.data, self.rating_mapping)
        return ratings, reg

    def fit(self, history: PurchaseHistory, *, progress: bool = False) -> None:
        from pyspark.ml.recommendation import ALS

        ratings, reg = self.spark_inputs(history)
        spark = spark_session(self.master, "tailor-train")
        parallelism = spark.sparkContext.defaultParallelism
        frame = pd.DataFrame({"customer": ratings.row.astype(np.int32), "item": ratings.col.astype(np.int32),
                              "rating": ratings.data})
        del ratings
        # Arrow slices the frame into ``parallelism`` partitions already; ALS shuffles the ratings into its
        # blocks itself, so a repartition here would only add a second full shuffle.
        frame = spark.createDataFrame(frame)
        als = ALS(rank=int(self.params["factors"]), maxIter=int(self.params["iterations"]), regParam=reg,
                  implicitPrefs=True, alpha=self.spark_alpha, userCol="customer", itemCol="item",
                  ratingCol="rating", seed=SEED, numUserBlocks=parallelism, numItemBlocks=parallelism,
                  coldStartStrategy="drop")
        fitted = als.fit(frame)
        factors = fitted.itemFactors.toPandas()
        item_factors = np.zeros((history.shape[1], int(self.params["factors"])), dtype=np.float32)
        if len(factors):
            item_factors[factors["id"].to_numpy()] = np.stack(factors["features"].to_numpy()).astype(np.float32)
        self.item_factors = item_factors
        self.spark_params = {**self.mapping(reg), "master": self.master, "parallelism": parallelism,
                             "spark_version": spark.version}

    def mapping(self, reg: float) -> dict[str, Any]:
        """How our settings became Spark's, as the manifest records it."""
        return {"alpha": self.spark_alpha, "regParam": reg, "reg_mapping": self.reg_mapping,
                "reg_scale": self.reg_scale,
                "rating": {"clamp": "max(alpha*w - 1, 0.001)", "shift": "alpha*w"}[self.rating_mapping]}


def export_recommendations_spark(model_dir: str | Path, customer_ids: list[str], n: int, exclude_purchased: bool,
                                 out_path: str, master: str = DEFAULT_MASTER,
                                 partitions: int | None = None, inactive: Collection[int] = (),
                                 live: Mapping[str, LiveRow] | None = None,
                                 now_day: float | None = None) -> dict[str, int]:
    """``tailor recommend`` for many customers in parallel: the customer list split into partitions, each
    scored by the same ``training.batch.export_recommendations`` on a Spark executor (reading the model
    directory, which executors must see: a shared path on a cluster) into a part file, then the parts
    concatenated in order into ``out_path`` under one header - the same CSV as the one-process export
    (``inactive`` items left out, ``live`` customers scored from their rows and ``now_day`` as there; each
    partition is sent the rows of its own customers)."""
    spark = spark_session(master, "tailor-recommend")
    sc = spark.sparkContext
    partitions = partitions or max(sc.defaultParallelism, 1)
    model_dir = str(Path(model_dir).resolve())
    parts_dir = Path(tempfile.mkdtemp(prefix="tailor-recs-", dir=Path(out_path).resolve().parent))
    never = sorted(int(item) for item in inactive)  # shipped to the executors with the function
    live = live or {}
    chunks = [customer_ids[len(customer_ids) * p // partitions: len(customer_ids) * (p + 1) // partitions]
              for p in range(partitions)]
    tasks = [(chunk, {i: live[i] for i in chunk if i in live}) for chunk in chunks]

    def run(index: int, rows: Any) -> Any:
        from scoring.artifact import read_artifact
        from scoring.threads import limit_blas_threads
        from training.batch import export_recommendations

        ids: list[str] = []
        scored_live: dict[str, LiveRow] = {}
        for chunk, chunk_live in rows:
            ids += chunk
            scored_live.update(chunk_live)
        path = parts_dir / f"part-{index:05d}.csv"
        with limit_blas_threads(), open(path, "w", encoding="utf-8", newline="") as out:
            counts = export_recommendations(read_artifact(model_dir), ids, n, exclude_purchased, out,
                                            inactive=set(never), live=scored_live, now_day=now_day)
        yield (index, counts)

    try:
        results = sorted(sc.parallelize(tasks, len(tasks)).mapPartitionsWithIndex(run).collect())
        with open(out_path, "w", encoding="utf-8", newline="") as out:
            for position, (index, _) in enumerate(results):
                with open(parts_dir / f"part-{index:05d}.csv", encoding="utf-8") as part:
                    header = part.readline()
                    if position == 0:
                        out.write(header)
                    shutil.copyfileobj(part, out)
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)
    totals = {"customers": 0, "known": 0, "fallback": 0, "live": 0, "rows": 0}
    for _, counts in results:
        for name in totals:
            totals[name] += counts[name]
    return totals
