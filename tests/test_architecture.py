"""The layers hold: `lint-imports` checks the contracts of pyproject.toml ([tool.importlinter]).

Run as part of the suite so that an import against the arrows (training -> service, a domain module
importing Redis or Flask, a lower service layer importing a higher one) fails CI.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> str:
    found = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert found, "import-linter is a dev dependency: pip install -e '.[dev]'"
    return found


def test_import_contracts_are_kept() -> None:
    result = subprocess.run([_lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_required_contracts_are_declared() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contracts = {c["id"]: c for c in config["contracts"]}
    assert contracts["layers"]["type"] == "layers"
    assert contracts["training-not-service"]["type"] == "forbidden"
    assert "service" in contracts["training-not-service"]["forbidden_modules"]
    assert {"flask", "redis"} <= set(contracts["pure-domain"]["forbidden_modules"])


def test_training_never_mentions_service_imports() -> None:
    """The issue's own check, including imports inside functions."""
    offenders = [f"{path.relative_to(ROOT)}:{n}" for path in (ROOT / "training").rglob("*.py")
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if line.lstrip().startswith(("from service", "import service"))]
    assert offenders == []
