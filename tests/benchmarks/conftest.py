"""Tests of the benchmark scripts: `benchmarks/` is put on the import path, as running a script there does (they
import each other by bare name: `from harness import ...`)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.append(str(BENCHMARKS))
