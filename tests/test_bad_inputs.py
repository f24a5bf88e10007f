"""Every broken input of the corpus (tests/broken_inputs.py) is one line on stderr, exit status 2,
no traceback, and nothing written — through the real entry point, as a user runs it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from broken_inputs import cases, classify
from simqos.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("broken")
    (tmp / "cwd" / "sub").mkdir(parents=True)  # where commands run: "--out .." must stay inside tmp
    return tmp, {case.name: case for case in cases(tmp, ROOT)}


def _names() -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return [case.name for case in cases(Path(tmp), ROOT)]


@pytest.mark.parametrize("name", _names())
def test_a_broken_input_is_one_line_and_exit_2(corpus, name, capsys, monkeypatch):
    tmp, by_name = corpus
    case = by_name[name]
    monkeypatch.chdir(tmp / "cwd" / "sub")
    monkeypatch.setattr(sys, "argv", ["simqos", *case.argv])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err.strip()
    assert classify(exited.value.code or 0, err, case.out) == "ok", err
