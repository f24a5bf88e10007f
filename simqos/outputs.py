"""Output folders: simqos writes only into folders it owns, and deletes only what it wrote.

Every folder simqos writes — a run's results, a sweep, a profile bundle, a validation — carries
a marker file, :data:`MARKER`, naming its kind. simqos replaces or adds to a folder only when
it is absent, empty, or carries the marker of the same kind; anything else (a user's folder,
the current directory or one above it, a symbolic link, a file) is refused with one line
before any work starts, and nothing outside the target folder is ever touched.

A folder that is replaced is built whole beside it, in ``OUT.partial`` (marked too, so a
leftover from an interrupted run is recognisably simqos's own and may be cleared), and swapped
in at the end: the old folder is moved aside, the new one renamed into place, and only then
is the old one deleted. Until the swap the earlier result stays intact, so a failure — a full
disk, Ctrl-C, a bug — never leaves a complete-looking folder that is not complete.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from simqos.errors import SimqosError

__all__ = ["MARKER", "Kind", "adopt", "check_writable", "claim", "discard", "mark", "owned", "partial", "staged", "start", "swap_in"]

MARKER = ".simqos"
"""The file, inside each folder simqos writes, that says it wrote the folder and what it is."""

Kind = Literal["results", "sweep", "profile", "validate", "trust", "compiled", "checkpoints"]

_WHAT = {
    "results": "results folder (simqos run)",
    "sweep": "sweep folder (simqos sweep)",
    "profile": "profile bundle (simqos profile)",
    "validate": "validation folder (simqos validate)",
    "trust": "trust folder (simqos trust)",
    "compiled": "compiled-code cache of one simqos version (simqos.jit)",
    "checkpoints": "checkpoints folder (the finished replications of a run)",
}


def _marker_text(kind: Kind) -> str:
    # Fixed content (no time, no version): a profile bundle's content hash must not change
    # with the day it was written.
    return json.dumps({"written_by": "simqos", "kind": kind}) + "\n"


def mark(folder: Path, kind: Kind) -> None:
    """Write the marker that makes ``folder`` recognisably simqos's own ``kind`` folder."""
    (folder / MARKER).write_text(_marker_text(kind))


def owned(folder: Path) -> str | None:
    """The kind named by ``folder``'s marker, or None if simqos did not write the folder."""
    try:
        document = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict) or document.get("written_by") != "simqos":
        return None
    kind = document.get("kind")
    return kind if kind in _WHAT else None


def _refusal(path: Path, kind: Kind, option: str) -> str | None:
    """Why ``path`` may not be written as a ``kind`` folder, or None if it may."""
    if path.is_symlink():
        return f"{path}: is a symbolic link; give the folder itself as {option}"
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        return f"{path}: is the current folder or one above it; give a new folder as {option}, e.g. runs/NAME"
    if not path.exists():
        return None
    if not path.is_dir():
        return f"{path}: is a file, not a folder; give a new folder as {option}"
    found = owned(path)
    if found == kind:
        return None
    if found is not None:
        return f"{path}: is a simqos {_WHAT[found]}, not a {_WHAT[kind]}; give another {option}"
    try:
        empty = not any(path.iterdir())
    except OSError as exc:
        return f"{path}: cannot be read ({exc.strerror}); give another {option}"
    if empty:
        return None
    return (
        f"{path}: exists and was not written by simqos (no {MARKER} marker), so simqos will not replace it; "
        f"give a new folder as {option}, or move it away yourself"
    )


def claim(out: Path, kind: Kind, option: str = "--out") -> None:
    """Raise SimqosError unless ``out`` may be written as a ``kind`` folder: absent, empty, or
    already simqos's own ``kind`` folder. ``option`` names where the path came from."""
    reason = _refusal(out, kind, option)
    if reason is not None:
        raise SimqosError(reason)


def adopt(folder: Path, kind: Kind, option: str) -> Path:
    """``folder`` as simqos's own ``kind`` folder to add files to: :func:`claim` it (absent,
    empty, or already that kind), then create and mark it. Returns it."""
    claim(folder, kind, option)
    folder.mkdir(parents=True, exist_ok=True)
    mark(folder, kind)
    return folder


def check_writable(out: Path, option: str = "--out") -> None:
    """Raise SimqosError unless ``out`` could be created: its nearest existing ancestor is a
    folder this process can write in. Creates nothing."""
    ancestor = out.resolve()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise SimqosError(f"{out}: {ancestor} is a file, not a folder; choose another {option}")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as exc:
        raise SimqosError(f"{out}: cannot write in {ancestor} ({exc.strerror}); choose a writable {option}") from None


def partial(out: Path) -> Path:
    """The work folder in which ``out`` is built: ``OUT.partial`` beside it."""
    resolved = out.resolve()
    return resolved.with_name(resolved.name + ".partial")


RESUME = "resume.key"
"""The file, in a work folder that may be resumed, naming what it is the work of."""


def start(out: Path, kind: Kind, option: str = "--out", resume: str | None = None,
          notice: Callable[[str], None] | None = None) -> Path:  # fmt: skip
    """Claim ``out`` and return a marked work folder ``OUT.partial``: fresh (a leftover one of
    an interrupted run is cleared first, and ``notice`` told so when the work was resumable),
    or, when ``resume`` names the work and a leftover one is of that same work, the leftover
    one as it is. Fails here, before any work, if it cannot write."""
    claim(out, kind, option)
    work = partial(out)
    claim(work, kind, option)
    try:
        if resume is not None and owned(work) == kind and _read(work / RESUME) == resume:
            return work
        if work.exists():
            if resume is not None and notice is not None:
                notice(f"{work} holds an interrupted run of another scenario, profile or simqos version; it is "
                       "discarded and this run starts afresh")
            shutil.rmtree(work)  # marked as simqos's own kind: claim() checked
        work.mkdir(parents=True)
        mark(work, kind)
        if resume is not None:
            (work / RESUME).write_text(resume)
    except OSError as exc:
        raise SimqosError(f"{out}: cannot write there ({exc.strerror}); choose a writable {option}") from None
    return work


def swap_in(work: Path, out: Path) -> None:
    """Put the finished ``work`` folder in ``out``'s place: the old ``out`` (simqos's own, or
    empty: :func:`claim` checked) is moved aside first and deleted only after the rename."""
    out = out.resolve()
    aside = None
    if out.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.replaced-", dir=out.parent))
        out.rename(aside / out.name)
    work.rename(out)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def discard(work: Path) -> None:
    """Remove an unfinished work folder (it carries simqos's marker; nothing else is touched)."""
    if owned(work) is not None:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def staged(out: Path, kind: Kind, option: str = "--out", resume: str | None = None,
           notice: Callable[[str], None] | None = None) -> Iterator[Path]:  # fmt: skip
    """Build ``out`` in a work folder and swap it in when the block finishes; if the block
    fails, the work folder is removed and the earlier ``out`` is left as it was. An OSError
    inside the block (a full disk, a vanished folder) becomes one line naming the cause.

    With ``resume`` (what the work is: :func:`start`), the work folder of an interrupted run
    (Ctrl-C, or a killed process) is kept beside ``out`` for the same work to go on from; it is
    never taken for a finished ``out``; ``notice`` hears of one discarded as another work's."""
    work = start(out, kind, option, resume, notice)
    try:
        yield work
        (work / RESUME).unlink(missing_ok=True)
        swap_in(work, out)
    except OSError as exc:
        discard(work)
        earlier = "; the earlier one there is untouched" if out.exists() else ""
        where = f" ({exc.filename})" if exc.filename else ""
        raise SimqosError(f"{out}: cannot write the {_WHAT[kind]}: {exc.strerror or exc}{where}{earlier}") from None
    except KeyboardInterrupt:
        if resume is None:
            discard(work)
        raise
    except BaseException:
        discard(work)
        raise
