"""Shared helpers of the speed benchmarks: model choice, inputs, timing, machine info, reports.

Nothing here is part of the package. Units: seconds in the timing helpers,
milliseconds in the reports, Angstrom for coordinates.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
#: Read-only reference data (never copied into the repository).
DEFAULT_MOLECULES_CSV = ROOT.parent / "shared" / "data" / "conformer-benchmark" / "molecules.csv"
if not DEFAULT_MOLECULES_CSV.is_file():
    DEFAULT_MOLECULES_CSV = Path("/work/shared/data/conformer-benchmark/molecules.csv")

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# torch before openmm: openmm loads its plugins at import, and openmm-torch's Reference/CPU
# kernels (libOpenMMTorchReference.so) only load when libtorch is already there (the package
# now reloads them itself, see system._reload_torch_plugins; this keeps the benchmarks independent of it).
import torch  # noqa: E402,F401

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import openmm  # noqa: E402

#: Seed of the stand-in model and of every random choice in the benchmarks.
SEED = 20260101
#: Where the stand-in model is written when the shipped one is missing (outside the repository).
STANDIN_DIR = Path(tempfile.gettempdir()) / "physff-openmm-bench"
#: Architecture of the stand-in: that of version 1's retired development model "dev".
STANDIN_CONFIG = {"hidden": 80, "n_steps": 4, "pair_hidden": 80, "r_on": 5.0, "r_off": 6.0}


# --- the model ---------------------------------------------------------------------------

def shipped_default_available() -> bool:
    """Whether ``load_model("default")`` can find a shipped model file."""
    from physff_openmm.errors import ModelError
    from physff_openmm.registry import resolve_model

    try:
        _, path = resolve_model("default")
    except ModelError:
        return False
    return Path(path).is_file()


def standin_model_path() -> Path:
    """A deterministic untrained model with the architecture of version 1's "dev" model, saved once.

    Used only while the shipped "default" model does not exist: inference cost
    depends on the architecture, not on the weights. The architecture is that of the
    retired "dev" model (hidden 80, 4 steps, pair_hidden 80, switch 5-6 Angstrom).
    """
    import torch

    from physff_openmm.model import ModelConfig, PhysFFModel, save_model_file

    path = STANDIN_DIR / f"standin-dev-arch-seed{SEED}.pt"
    if not path.is_file():
        torch.manual_seed(SEED)
        model = PhysFFModel(ModelConfig(**STANDIN_CONFIG))
        save_model_file(model, path, {"name": "standin-untrained", "note": "benchmark stand-in, random weights"})
    return path


def resolve_benchmark_model(choice: str) -> tuple[Any, dict[str, Any]]:
    """(model, description) for ``--model``: "auto" (shipped default, else the stand-in), "standin", a name or a path."""
    from physff_openmm.registry import load_model

    if choice == "auto":
        choice = "default" if shipped_default_available() else "standin"
    if choice == "standin":
        model = load_model(standin_model_path())
        kind = "stand-in: untrained, random weights, dev architecture; shipped model missing"
        given = "standin"
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = load_model(choice)
        kind = "shipped" if not Path(choice).suffix else "file"
        given = choice
    info = {
        "requested": given,
        "kind": kind,
        "name": model.name,
        "sha256": model.file_hash,
        "config": model.config.to_dict(),
        "metadata_keys": sorted(model.metadata),
    }
    return model, info


# --- inputs ------------------------------------------------------------------------------

def read_molecules_csv(path: Path = DEFAULT_MOLECULES_CSV) -> list[dict[str, Any]]:
    """Rows of the conformer-benchmark molecules.csv (name, smiles, charge, natoms)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["charge"] = int(row["charge"])
        row["natoms"] = int(row["natoms"])
    return rows


def usable(smiles: str) -> bool:
    """Whether the package accepts the SMILES (supported elements, valid)."""
    from physff_openmm.errors import MoleculeError
    from physff_openmm.molecule import load_molecule

    try:
        load_molecule(smiles)
    except (MoleculeError, ValueError):
        return False
    return True


def build_cluster(mols: list, seed: int = SEED, gap: float = 2.5, directions: int = 60):
    """Pack molecules (each with a 3D conformer) into a compact cluster, as one complex.

    Deterministic ballistic packing: each molecule, randomly rotated, approaches the cluster's
    centre from the best of ``directions`` random directions until an atom comes within
    ``gap`` Angstrom of an atom already placed (the closest approach to the centre wins).

    Returns
    -------
    (rdkit.Chem.Mol, np.ndarray)
        The combined molecule (its conformer set to the packed coordinates) and the
        positions, Angstrom.
    """
    from rdkit import Chem
    from rdkit.Geometry import Point3D
    from scipy.spatial import cKDTree

    from physff_openmm.molecule import combine_molecules, positions_angstrom, random_rotation

    rng = np.random.default_rng(seed)
    placed: list[np.ndarray] = []
    for m in mols:
        xyz = positions_angstrom(m)
        xyz = (xyz - xyz.mean(axis=0)) @ random_rotation(rng).T
        if not placed:
            placed.append(xyz)
            continue
        cloud = np.concatenate(placed)
        tree = cKDTree(cloud)
        centre = cloud.mean(axis=0)
        reach = float(np.linalg.norm(cloud - centre, axis=1).max() + np.linalg.norm(xyz, axis=1).max() + gap + 1.0)
        best = None
        for _ in range(directions):
            u = rng.normal(size=3)
            u /= np.linalg.norm(u)
            dist = reach
            while dist > 0.0:  # approach in 0.25 Angstrom steps until contact
                trial = xyz + centre + (dist - 0.25) * u
                if tree.query(trial, k=1)[0].min() < gap:
                    break
                dist -= 0.25
            if best is None or dist < best[0]:
                best = (dist, xyz + centre + dist * u)
        placed.append(best[1])
    xyz = np.concatenate(placed)
    bare = []
    for m in mols:  # the topology only: the molecules' own conformers overlap at the origin
        b = Chem.Mol(m)
        b.RemoveAllConformers()
        bare.append(b)
    combined = Chem.Mol(combine_molecules(bare))
    conf = Chem.Conformer(combined.GetNumAtoms())
    for i, (x, y, z) in enumerate(xyz):
        conf.SetAtomPosition(i, Point3D(float(x), float(y), float(z)))
    combined.AddConformer(conf, assignId=True)
    return combined, xyz


# --- timing ------------------------------------------------------------------------------

def time_calls(fn: Callable[[], Any], repeats: int, setup: Callable[[], Any] | None = None) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` (``setup`` runs untimed before each)."""
    out = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def summary_ms(seconds: list[float], per: int = 1) -> dict[str, float]:
    """Median, min and max in milliseconds (each divided by ``per``), with the repeat count."""
    ms = [1e3 * s / per for s in seconds]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms), "repeats": len(ms)}


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


# --- machine and versions ----------------------------------------------------------------

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        from importlib import metadata

        return metadata.version(module)
    except Exception:  # noqa: BLE001 - report what can be found
        return None


def _git_head() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, package versions and the exact package sources benchmarked."""
    import torch

    pkg = ROOT / "physff_openmm"
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "openmm": openmm.__version__,
        "openmmtorch": _version("openmmtorch"),
        "torch": torch.__version__,
        "rdkit": _version("rdkit"),
        "numpy": np.__version__,
        "tblite": _version("tblite"),
        "physff_openmm_git_head": _git_head(),
        "system_py_sha256": _file_sha256(pkg / "system.py"),
        "load_average_start": load_average(),
    }


def command_line(argv: list[str] | None = None, script: str | None = None) -> str:
    """The command that produced the results, as typed from the repository root.

    ``argv`` and ``script`` (a script's ``__file__``) default to ``sys.argv``; pass
    them when ``main(argv)`` is called from Python rather than the shell.
    """
    script = os.path.relpath(os.path.abspath(script or sys.argv[0]), ROOT)
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python", shlex.quote(script)] + [shlex.quote(a) for a in args])


def cpu_platform(threads: int) -> tuple[openmm.Platform, dict[str, str]]:
    """OpenMM's CPU platform with an explicit thread count."""
    return openmm.Platform.getPlatformByName("CPU"), {"Threads": str(threads)}


# --- reports -----------------------------------------------------------------------------

def fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if x != x:
            return "nan"
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:.{digits}f}"
    return str(x)


def md_table(header: list[str], rows: list[list[Any]], digits: int = 2) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(fmt(c, digits) for c in row) + " |" for row in rows]
    return "\n".join(out)


def header_markdown(title: str, info: dict[str, Any], model: dict[str, Any], extra: list[str] | None = None) -> str:
    lines = [
        f"# {title}",
        "",
        "Command (from the repository root, with the project's Python environment):",
        "",
        "```",
        command_line(),
        "```",
        "",
        f"- Date: {info['date_utc']}",
        f"- Machine: {info['cpu_model']}, {info['usable_cores']} usable cores",
        f"- Versions: Python {info['python']}, OpenMM {info['openmm']}, openmm-torch {info['openmmtorch']}, "
        f"torch {info['torch']}, RDKit {info['rdkit']}, NumPy {info['numpy']}, tblite {info['tblite']}",
        f"- physff-openmm: git HEAD {info['physff_openmm_git_head']}, system.py sha256 {info['system_py_sha256'][:16]}",
        f"- Model: {model['name']} ({model['kind']}), sha256 {model['sha256']}, "
        f"hidden {model['config']['hidden']}, steps {model['config']['n_steps']}, pair_hidden {model['config']['pair_hidden']}",
        f"- Load average (1/5/15 min) at start: {info['load_average_start']}, at end: {info.get('load_average_end')}",
    ]
    lines += extra or []
    return "\n".join(lines) + "\n"


def write_results(stem: str, payload: dict[str, Any], markdown: str, out_dir: Path = RESULTS) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` whole (temporary name, then rename)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, text in ((".json", json.dumps(payload, indent=2, sort_keys=False) + "\n"), (".md", markdown)):
        path = out_dir / f"{stem}{suffix}"
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(text)
        tmp.replace(path)
        paths.append(path)
    return paths[0], paths[1]
