"""End to end through the `tailor` CLI on the shipped Online Retail excerpt: train -> artifact -> recommend."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from scoring.artifact import ArtifactError, read_artifact
from tailor.cli import main
from tests.conftest import SAMPLE_CSV


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "model"
    assert main(["--quiet", "train", "--data", str(SAMPLE_CSV), "--format", "online-retail", "--out", str(out)]) == 0
    return out


def test_train_writes_a_complete_manifest(model_dir: Path) -> None:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["algorithm"] == "hybrid"
    assert manifest["counts"]["customers"] == 300
    assert manifest["data"]["quality"]["rows_read"] == 13_071
    assert len(manifest["data"]["fingerprint_sha256"]) == 64
    assert {"overall", "discovery"} <= set(manifest["evaluation"]["model"])
    assert manifest["evaluation"]["baseline"]["algorithm"] == "popular"
    assert {"implicit", "numpy", "scipy"} <= set(manifest["libraries"])
    assert set(manifest["files"]) >= {"model.npz", "history.npz", "items.json", "item_ids.npy"}
    assert not list(model_dir.parent.glob(".model.tmp-*")), "staging directory left behind"


def test_artifact_round_trip_scores_identically(model_dir: Path) -> None:
    artifact = read_artifact(model_dir, verify=True)
    again = read_artifact(model_dir)
    rows = np.arange(20)
    np.testing.assert_array_equal(artifact.model.score(artifact.history.rows(rows)),
                                  again.model.score(again.history.rows(rows)))
    assert artifact.history.shape == (300, len(artifact.item_ids))
    assert len(artifact.items) == len(artifact.item_ids)


def test_corrupt_artifact_is_refused(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    (copy / "items.json").write_text("[]")
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        read_artifact(copy, verify=True)


def test_recommend_batch_export(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = [str(x) for x in np.load(model_dir / "customer_ids.npy")[:25]]
    customers = tmp_path / "customers.txt"
    customers.write_text("customer_id\n" + "\n".join([*ids, "no-such-customer"]) + "\n")
    out = tmp_path / "recs.csv"
    assert main(["recommend", "--model", str(model_dir), "--customers", str(customers), "--n", "5",
                 "--exclude-purchased", "--output", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["customer_id", "rank", "item_id", "score", "source"]
    assert {r["source"] for r in rows[:-5]} == {"personalized"}
    assert {r["source"] for r in rows[-5:]} == {"popular-fallback"}
    assert len(rows) == 26 * 5
    assert [r["customer_id"] for r in rows[::5]] == [*ids, "no-such-customer"]
    assert [int(r["rank"]) for r in rows[:5]] == [1, 2, 3, 4, 5]
    artifact = read_artifact(model_dir)
    row = int(np.flatnonzero(artifact.customer_ids == ids[0])[0])
    bought = set(artifact.item_ids[artifact.history.items_of(row)])
    first = [r["item_id"] for r in rows if r["customer_id"] == ids[0]]
    assert not bought & set(first), "--exclude-purchased returned an already-bought item"
    scores = [float(r["score"]) for r in rows[:5]]
    assert scores == sorted(scores, reverse=True)
    fallback = [r["item_id"] for r in rows if r["customer_id"] == "no-such-customer"]
    assert fallback == [artifact.item_ids[i] for i in artifact.popular["global"]["items"][:5]]


def test_customers_file_with_a_byte_order_mark_or_not_utf8(model_dir: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A spreadsheet's BOM does not make the first customer unknown; a line that is not UTF-8 is a one-line error
    naming it (it used to become an id with U+FFFD that silently got the popular fallback)."""
    ids = [str(x) for x in np.load(model_dir / "customer_ids.npy")[:2]]
    customers = tmp_path / "customers.csv"
    customers.write_bytes(("\ufeffcustomer_id\n" + "\n".join(ids) + "\n").encode("utf-8"))
    out = tmp_path / "recs.csv"
    assert main(["recommend", "--model", str(model_dir), "--customers", str(customers), "--n", "2",
                 "--output", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["customer_id"] for r in rows] == [ids[0], ids[0], ids[1], ids[1]]
    assert {r["source"] for r in rows} == {"personalized"}
    customers.write_bytes(f"{ids[0]}\nM\xfcller\n".encode("latin-1"))
    capsys.readouterr()
    assert main(["recommend", "--model", str(model_dir), "--customers", str(customers), "--output", str(out),
                 "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (f"tailor: error: {customers}: line 2 is not UTF-8 text (byte 2); "
                                               "save the customers file as UTF-8")


def test_unknown_customers_between_known_ones_get_the_fallback(model_dir: Path, tmp_path: Path) -> None:
    """known, unknown, unknown, known (one scoring chunk): four customers, each with a full list, in order."""
    ids = [str(x) for x in np.load(model_dir / "customer_ids.npy")[:2]]
    customers = tmp_path / "customers.txt"
    wanted = [ids[0], "ghost-1", "ghost-2", ids[1]]
    customers.write_text("\n".join(wanted) + "\n")
    out = tmp_path / "recs.csv"
    assert main(["recommend", "--model", str(model_dir), "--customers", str(customers), "--n", "3",
                 "--output", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["customer_id"] for r in rows] == [c for c in wanted for _ in range(3)]
    assert [int(r["rank"]) for r in rows] == [1, 2, 3] * 4
    artifact = read_artifact(model_dir)
    popular = [artifact.item_ids[i] for i in artifact.popular["global"]["items"][:3]]
    assert [r["item_id"] for r in rows[3:6]] == popular == [r["item_id"] for r in rows[6:9]]
    assert [r["source"] for r in rows] == ["personalized"] * 3 + ["popular-fallback"] * 6 + ["personalized"] * 3


def test_until_is_recorded_and_respected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m"
    assert main(["train", "--data", str(SAMPLE_CSV), "--format", "online-retail", "--until", "2011-06-01",
                 "--algorithm", "popular", "--no-eval", "--out", str(out), "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["until"] == "2011-06-01"
    assert manifest["data"]["last_timestamp"] < "2011-06-01"
    assert manifest["evaluation"] is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--data", "missing.csv", "--out", "x"], "missing.csv"),
        (["train", "--data", str(SAMPLE_CSV), "--format", "nope", "--out", "x"], "nope"),
        (["train", "--data", str(SAMPLE_CSV), "--format", "online-retail"], "nothing to do"),
        (["train", "--data", str(SAMPLE_CSV), "--format", "online-retail", "--algorithm", "popular",
          "--factors", "8", "--out", "x"], "--factors does not apply to --algorithm popular"),
        (["train", "--data", str(SAMPLE_CSV), "--format", "online-retail", "--factors", "-3",
          "--algorithm", "als", "--out", "x"], "--factors: factors must be at least 1, got -3"),
        # checked before the log is read (the file does not even exist)
        (["train", "--data", "missing.csv", "--algorithm", "item-knn", "--neighbours", "0", "--out", "x"],
         "--neighbours: neighbours must be at least 1, got 0"),
        (["evaluate", "--data", "missing.csv", "--algorithm", "tifu-knn", "--alpha", "2"],
         "--alpha: alpha must be at least 0 and at most 1, got 2.0"),
        (["train", "--data", "missing.csv", "--algorithm", "bpr", "--learning-rate", "0", "--out", "x"],
         "--learning-rate: learning_rate must be above 0, got 0.0"),
        (["train", "--data", "missing.csv", "--half-life", "nan", "--out", "x"],
         "half_life must be at least 0, got nan"),
        (["train", "--data", str(SAMPLE_CSV), "--format", "online-retail", "--algorithm", "bpr", "--learning-rate",
          "1e9", "--no-eval", "--out", "x"], "bpr did not converge (NaN encountered in factors)"),
        (["train", "--data", str(SAMPLE_CSV), "--until", "yesterday", "--out", "x"], "yesterday"),
        (["recommend", "--model", "no-such-dir", "--customers", "-", "--output", "-"], "no-such-dir"),
        (["recommend", "--model", "x", "--customers", "nofile.txt", "--output", "-"], "nofile.txt"),
        (["publish", "--model", "no-such-dir", "--redis-url", "redis://127.0.0.1:1/0"], "no-such-dir"),
    ],
)
def test_cli_errors_are_one_line_with_status_2(argv: list[str], message: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--quiet", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("tailor: error: ")
    assert message in err[0]


@pytest.mark.parametrize(("command", "remedy"), [
    (["train", "--out", "m"], "pass a smaller --holdout-days or --no-eval"),
    (["train", "--out", "m", "--algorithm", "popular"], "pass a smaller --holdout-days or --no-eval"),
    (["evaluate"], "pass a smaller --holdout-days"),
])
def test_a_log_shorter_than_the_holdout_is_a_one_line_error(command: list[str], remedy: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    Path("short.csv").write_text("customer_id,item_id,timestamp\nc1,i1,2024-01-01\nc1,i2,2024-01-02\n"
                                 "c2,i1,2024-01-03\nc2,i3,2024-01-05\n")
    assert main(["--quiet", *command, "--data", "short.csv"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("tailor: error: short.csv: the log covers 2024-01-01..2024-01-05 (4 days)")
    assert "30-day holdout" in err[0] and err[0].endswith(remedy)
    assert main(["--quiet", *command, "--data", "short.csv", "--holdout-days", "2"]) == 0
    capsys.readouterr()


def test_unreachable_redis_is_named(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["publish", "--model", str(model_dir), "--redis-url", "redis://:secret@127.0.0.1:1/0"]) == 2
    err = capsys.readouterr().err
    assert "127.0.0.1:1" in err and "secret" not in err


def test_help_lists_the_allowed_values_of_every_choice_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """Every flag with a fixed set of values (argparse choices, hyper-parameters with choices, --format)
    names those values in `--help`."""
    import argparse

    from scoring.models import HYPERPARAMETERS
    from tailor.parser import build_parser
    from training.data import FORMATS

    def subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from subcommands(child, (*path, name))

    checked = 0
    for path, parser in subcommands(build_parser()):
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if action.choices and not isinstance(action, argparse._SubParsersAction):
                for value in action.choices:
                    assert str(value) in text, (path, action.option_strings, value)
                checked += 1
        if path == ("train",):
            for params in HYPERPARAMETERS.values():
                for param in params.values():
                    flag = next(a for a in parser._actions if param.flag in a.option_strings)
                    for value in param.choices or ():
                        assert str(value) in (flag.help or ""), (param.flag, value)
                        checked += 1
            assert all(fmt in text for fmt in FORMATS)
    assert checked > 5
