"""The opt-in compiled gateway (bench/compiled.py, `make compiled`): the hot modules compiled
with mypyc give the goldens byte for byte.

The build takes about 25 s of CPU and the golden suites run again on it (about a minute more),
so the test is ``slow`` (``pytest --slow`` or ``AIMGW_SLOW=1``); it is skipped where the
machine has no C compiler or no Python headers. The copy is built in a temporary folder: the
working tree and .venv/compiled are left alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path.insert(0, str(ROOT / "bench"))
import compiled  # noqa: E402

# The test files that compare the gateway's outputs with tests/golden/.
GOLDEN_SUITES = ["test_ace.py", "test_ace54.py", "test_bounds.py", "test_csv.py",
                 "test_hts_editions.py", "test_lifecycle_run.py", "test_mapping.py",
                 "test_pipeline.py"]

# What compiling costs (bench/README.md, "The compiled gateway"): this test replaces a method
# of AceFileWriter, a compiled class, and the compiled callers keep calling the original.
PATCHES_A_COMPILED_CLASS = [
    "test_ace.py::test_many_blocks_past_the_memory_bound_spill_and_give_the_same_bytes"]


def test_the_compiled_modules_exist_and_are_in_the_package() -> None:
    for module in compiled.HOT_MODULES:
        assert (ROOT / module).is_file(), module
    assert "gateway/findings.py" not in compiled.HOT_MODULES  # frozen + pickled: see the list


@pytest.mark.slow
def test_the_compiled_gateway_gives_the_goldens(tmp_path: Path) -> None:
    why = compiled.can_build()
    if why:
        pytest.skip(f"cannot build the compiled gateway: {why}")
    dest = tmp_path / "compiled"
    compiled.build(dest, log=False)
    # The inner run is the plain suites (their slow tests, if any, stay skipped).
    env = {**{k: v for k, v in os.environ.items() if k != "AIMGW_SLOW"},
           "PYTHONPATH": str(dest)}
    # -P: not the working directory first on sys.path, where the pure package would win.
    where = subprocess.run(
        [sys.executable, "-P", "-c", "import gateway.validate.rules as m; print(m.__file__)"],
        env=env, capture_output=True, text=True, check=True).stdout
    assert where.strip().endswith(".so") and where.startswith(str(dest))

    done = subprocess.run(
        [sys.executable, "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         *GOLDEN_SUITES,  # node ids stay relative to the rootdir, the project folder
         *(arg for test in PATCHES_A_COMPILED_CLASS for arg in ("--deselect", f"tests/{test}"))],
        cwd=TESTS, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
