"""Output files: checked before a job starts, written whole or not at all.

Every file a workflow writes goes to a temporary file in the destination folder
(``.NAME.PID.partial.SUFFIX``) and is renamed over the destination only when
the writer finished; on an error or Ctrl-C the temporary file is removed, so no
partial output is ever left behind (:func:`atomic_output`). The exception are the
files an MD run writes as it goes, its trajectory and state report
(:func:`kept_output`): what they hold when a run stops early is kept, and a
restarted run appends to them.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from rdkit import Chem, rdBase

from ..errors import ConfigError, FileAccessError

__all__ = [
    "check_output_path",
    "atomic_output",
    "kept_output",
    "write_text",
    "write_rows_csv",
    "write_structures",
    "read_report_csv",
    "STRUCTURE_SUFFIXES",
]

#: Structure formats :func:`write_structures` writes.
STRUCTURE_SUFFIXES: tuple[str, ...] = (".sdf", ".pdb")


def check_output_path(path: str | os.PathLike, *, what: str = "output", suffixes: Sequence[str] | None = None) -> Path:
    """Check, before any work, that ``path`` can be written.

    Parameters
    ----------
    path : str or os.PathLike
        The destination file.
    what : str
        What the file is, for the error message (``"trajectory"``, ...).
    suffixes : sequence of str, optional
        Accepted suffixes (lower case, with the dot).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ConfigError
        The suffix is not one of ``suffixes``.
    FileAccessError
        The folder does not exist or is not writable, or ``path`` is a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise FileAccessError(f"cannot write {what} {str(path)!r}: it is a folder")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        shown = path.suffix or "no suffix"
        raise ConfigError(f"{what} {str(path)!r}: unsupported format ({shown}); use one of {', '.join(suffixes)}")
    folder = path.parent
    if not folder.exists():
        raise FileAccessError(f"cannot write {what} {str(path)!r}: folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise FileAccessError(f"cannot write {what} {str(path)!r}: {str(folder)!r} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FileAccessError(f"cannot write {what} {str(path)!r}: no permission to write in {str(folder)!r}")
    if path.exists() and not os.access(path, os.W_OK):
        raise FileAccessError(f"cannot write {what} {str(path)!r}: the file exists and is read-only")
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds.

    On any exception (``KeyboardInterrupt`` included) the temporary file is
    removed and the exception propagates; ``path`` is left untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial{path.suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise FileAccessError(f"nothing was written for {str(path)!r}")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise _write_error(exc, path, tmp) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


#: Errors of a write that carry no file name (a full disk, a quota): they are about the file being written.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


def _write_error(exc: OSError, path: Path, tmp: Path) -> OSError:
    """``exc`` as a FileAccessError naming the user's ``path`` where it is about the temporary file ``tmp``."""
    if isinstance(exc, FileAccessError):
        return exc
    name = getattr(exc, "filename", None)
    if (name is not None and Path(name) == tmp) or (name is None and exc.errno in _WRITE_ERRNOS):
        return FileAccessError(f"cannot write {str(path)!r}: {exc.strerror or exc}")
    return exc


@contextlib.contextmanager
def kept_output(path: str | os.PathLike, *, append: bool = False) -> Iterator[tuple[Path, bool]]:
    """Yield ``(file to write, appending)`` for a file a run writes as it goes (a trajectory, a state report).

    With ``append`` and an existing ``path``: ``path`` itself, to extend in place,
    and True. Otherwise a temporary file next to ``path`` and False; when the block
    ends, on success and on an error or Ctrl-C alike, the temporary file is renamed
    over ``path`` (what was written so far is kept), unless nothing was written.
    """
    path = Path(path)
    if append and path.is_file():
        yield path, True
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial{path.suffix}")
    try:
        yield tmp, False
    except OSError as exc:
        raise _write_error(exc, path, tmp) from None
    finally:
        if tmp.is_file() and tmp.stat().st_size > 0:
            os.replace(tmp, path)
        else:
            with contextlib.suppress(OSError):
                tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def write_rows_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Write a CSV file (header line, then rows) whole or not at all; floats at full precision."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in rows:
            writer.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in row])


def write_structures(
    mol: Chem.Mol,
    path: str | os.PathLike,
    *,
    conf_ids: Sequence[int] | None = None,
    properties: Sequence[dict] | None = None,
) -> None:
    """Write conformers of ``mol`` to an SDF file (one record per conformer) or one conformer to a PDB file.

    Parameters
    ----------
    mol : rdkit.Chem.Mol
        Molecule or complex with conformers (Angstrom).
    path : str or os.PathLike
        ``.sdf``, or ``.pdb`` for a single conformer; bond orders are kept (PDB:
        repeated CONECT records). Several structures go to SDF only: RDKit reads
        no CONECT records after a PDB file's first MODEL, which would lose the bonds.
    conf_ids : sequence of int, optional
        Conformers to write, in order (default: all, in the molecule's order).
    properties : sequence of dict, optional
        SDF data fields of each written record.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in STRUCTURE_SUFFIXES:
        raise ConfigError(f"cannot write structures to {str(path)!r}: use one of {', '.join(STRUCTURE_SUFFIXES)}")
    ids = [c.GetId() for c in mol.GetConformers()] if conf_ids is None else list(conf_ids)
    if suffix == ".pdb" and len(ids) != 1:
        raise ConfigError(f"{str(path)!r}: a PDB file here holds one structure; write {len(ids)} structures to .sdf")
    with atomic_output(path) as tmp, rdBase.BlockLogs():
        if suffix == ".sdf":
            writer = Chem.SDWriter(str(tmp))
            try:
                for k, cid in enumerate(ids):
                    rec = Chem.Mol(mol)
                    for key in list(rec.GetPropNames()):
                        rec.ClearProp(key)
                    for key, value in (properties[k] if properties else {}).items():
                        rec.SetProp(str(key), str(value))
                    writer.write(rec, confId=int(cid))
            finally:
                writer.close()
        else:
            tmp.write_text(Chem.MolToPDBBlock(mol, confId=int(ids[0])))


def read_report_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Columns of an OpenMM StateDataReporter CSV file, keyed by their header names.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`physff_openmm.workflows.run_md` (``report_csv``).

    Returns
    -------
    dict of str to numpy.ndarray
        e.g. ``"Step"``, ``"Time (ps)"``, ``"Potential Energy (kJ/mole)"``,
        ``"Kinetic Energy (kJ/mole)"``, ``"Total Energy (kJ/mole)"``, ``"Temperature (K)"``.
    """
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            lines = [ln for ln in fh.read().splitlines() if ln.strip()]
    except OSError as exc:
        raise FileAccessError(f"cannot read report {str(path)!r}: {exc.strerror or exc}") from None
    if not lines or not lines[0].startswith("#"):
        raise FileAccessError(f"{str(path)!r} is not a state report CSV (no '#' header line)")
    header = next(csv.reader([lines[0][1:]]))
    try:
        values = np.array([[float(x) for x in row] for row in csv.reader(lines[1:])], dtype=np.float64)
    except ValueError as exc:
        raise FileAccessError(f"{str(path)!r}: unreadable state report row: {exc}") from None
    values = values.reshape(-1, len(header))
    return {name: values[:, k] for k, name in enumerate(header)}
