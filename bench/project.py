"""The config.toml of a benchmark run, for every bench script: written by the tests' own
ProjectConfig (tests/project_config.py), so the bench and the tests share one writer and one
filer block, and a run states only the settings it changes (every other one keeps its
default)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from project_config import ProjectConfig

__all__ = ["ProjectConfig"]
