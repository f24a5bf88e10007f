"""simqos's compiled code is cached by a digest of the code that compiles, so an update that
changes only a function others inline (the serving core, inlined by the fast path's driver)
never loads stale code, and one that changes only a comment or the report recompiles nothing."""

import os
from pathlib import Path

import numba
import numpy as np

from simqos import jit


def test_the_digest_changes_with_the_code_that_compiles_and_nothing_else(tmp_path):
    package = tmp_path / "simqos"
    (package / "sub").mkdir(parents=True)
    (package / "serving.py").write_text("from simqos.jit import njit\n\n\n@njit()\ndef rule():\n    return 1\n")
    (package / "sub" / "fastpath.py").write_text("from simqos.jit import njit\nfrom simqos.serving import rule\n")
    (package / "metrics.py").write_text('"""Constants."""\nBATCHES = 10\n')
    (package / "tally.py").write_text("from simqos.jit import njit\nfrom simqos.metrics import BATCHES\n")
    (package / "report.py").write_text("def draw():\n    return 1\n")
    (package / "greedy.py").write_text("from simqos.serving import decide_jit\n\n\n@decide_jit\ndef decide():\n    return 0\n")
    assert [p.name for p in jit.compiling_modules(package)] == ["greedy.py", "metrics.py", "serving.py", "fastpath.py", "tally.py"]
    before = jit.compiled_code_digest(package)
    assert jit.compiled_code_digest(package) == before  # deterministic

    (package / "report.py").write_text("def draw():\n    return 2\n")  # code that does not compile
    (package / "metrics.py").write_text('"""Constants, read by compiled code."""\n\n# ten batches\nBATCHES = 10  # k\n')
    (package / "serving.py").write_text("from simqos.jit import njit\n\n\n@njit()\ndef rule():\n"
                                       '    """The rule."""\n    return 1  # one\n')
    assert jit.compiled_code_digest(package) == before  # comments, docstrings, blank lines, the report

    (package / "serving.py").write_text("from simqos.jit import njit\n\n\n@njit()\ndef rule():\n    return 2\n")
    assert jit.compiled_code_digest(package) != before  # only the inlined callee changes
    (package / "serving.py").write_text("from simqos.jit import njit\n\n\n@njit()\ndef rule():\n    return 1\n")
    assert jit.compiled_code_digest(package) == before
    (package / "metrics.py").write_text("BATCHES = 20\n")  # a constant compiled code reads
    assert jit.compiled_code_digest(package) != before


def test_the_digest_is_the_same_in_every_process():
    """A set literal compiles to a frozenset whose order follows the process's string hashing."""
    import subprocess
    import sys

    code = "from pathlib import Path; from simqos import jit; print(jit.compiled_code_digest(Path(jit.__file__).parent))"
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2, 3)}
    assert len(digests) == 1


def test_compiled_code_is_kept_under_this_versions_folder():
    folder = Path(jit.cache_dir())
    assert folder.name == f"simqos-{jit.compiled_code_digest(Path(jit.__file__).parent)}"
    before = numba.config.CACHE_DIR

    @jit.njit()
    def twice(x):
        return 2 * x

    assert twice(3) == 6
    assert numba.config.CACHE_DIR == before  # the user's setting is left as it was
    assert any(p.name.startswith("test_compiled.") and ".twice-" in p.name for p in folder.rglob("*.nbi"))


def test_only_marked_caches_of_other_versions_are_removed(tmp_path):
    """Updating simqos clears the older versions' compiled code it wrote (marked), and nothing
    else in the folder: not an unmarked folder, not another kind's, not a file, not a link."""
    from simqos.outputs import mark

    old = jit.claim_cache(tmp_path, "simqos-0000000000000000")
    (old / "code.nbi").write_text("x")
    unmarked = tmp_path / "simqos-1111111111111111"
    unmarked.mkdir()
    results = tmp_path / "results"
    results.mkdir()
    mark(results, "results")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "link").symlink_to(old)
    new = jit.claim_cache(tmp_path, "simqos-2222222222222222")
    assert new.is_dir() and not old.exists()
    assert unmarked.is_dir() and results.is_dir() and (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "link").is_symlink()
    assert jit.claim_cache(tmp_path, new.name) == new  # the current version's is kept



def test_a_borrowed_array_reads_as_its_owner():
    @numba.njit
    def read(view):
        return view.sum(), view[-1], view.shape[0]

    @numba.njit
    def through_borrow(a, i):
        return read(jit.borrow(a[i:]))

    a = np.arange(10.0)
    assert jit.borrow(a) is a  # in Python, the array itself
    assert through_borrow(a, 3) == (a[3:].sum(), 9.0, 7)
