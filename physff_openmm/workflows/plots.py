"""Plots of scan profiles and MD traces (matplotlib, Agg canvas; an optional dependency)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DependencyError
from ..units import KJ_TO_KCAL
from ._files import atomic_output, check_output_path, read_report_csv

__all__ = ["plot_scan", "plot_md_report", "check_plot_path"]

_HINT = "plots need matplotlib: pip install physff-openmm[plot]"


def _figure(nrows: int = 1, height: float = 3.6):
    """A matplotlib Figure with an Agg canvas (no pyplot, no global backend change)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise DependencyError(_HINT) from None
    fig = Figure(figsize=(6.4, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def check_plot_path(path: str | os.PathLike) -> Path:
    """Check that matplotlib is installed and ``path`` is a writable image file of a known format."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        raise DependencyError(_HINT) from None
    formats = tuple(f".{k}" for k in sorted(FigureCanvasAgg.get_supported_filetypes()))
    return check_output_path(path, what="plot", suffixes=formats)


def _save(fig, path: str | os.PathLike) -> None:
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".").lower(), dpi=150)


def plot_scan(
    rows: Sequence[tuple[float, float]],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    xlabel: str = "dihedral angle (deg)",
) -> None:
    """Plot a torsion-scan profile, energy (kcal/mol, relative) against angle (deg), to an image file.

    Parameters
    ----------
    rows : sequence of (float, float)
        ``(angle_deg, energy_kcal_mol)`` as returned by :func:`physff_openmm.workflows.torsion_scan`.
    path : str or os.PathLike
        Image file (``.png``, ``.svg``, ``.pdf``, ...), written whole or not at all.
    title : str, optional
    xlabel : str
    """
    check_plot_path(path)
    data = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
    if len(data) == 0:
        raise ConfigError("nothing to plot: the scan has no rows")
    order = np.argsort(data[:, 0])
    x, y = data[order, 0], data[order, 1]
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(np.append(x, x[0] + 360.0), np.append(y, y[0]), "o-", color="tab:blue")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("relative energy (kcal/mol)")
    ax.set_xlim(x[0], x[0] + 360.0)
    ax.set_xticks(np.arange(x[0], x[0] + 361.0, 60.0))
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    _save(fig, path)


def plot_md_report(report_csv: str | os.PathLike, path: str | os.PathLike, *, title: str | None = None) -> None:
    """Plot energy changes (kcal/mol) and temperature (K) against time (ps) from a state report CSV.

    The top panel shows potential, kinetic and total energy minus their values in
    the first row (so drift and exchange are visible at any absolute energy); the
    bottom panel the instantaneous temperature.

    Parameters
    ----------
    report_csv : str or os.PathLike
        A file written by :func:`physff_openmm.workflows.run_md` (``report_csv``).
    path : str or os.PathLike
        Image file, written whole or not at all.
    title : str, optional
    """
    check_plot_path(path)
    cols = read_report_csv(report_csv)
    t = cols.get("Time (ps)")
    if t is None or len(t) == 0:
        raise ConfigError(f"{str(report_csv)!r} has no time column or no rows to plot")
    fig = _figure(nrows=2, height=2.8)
    ax_e, ax_t = fig.subplots(2, 1, sharex=True)
    for name, label, color in (
        ("Potential Energy (kJ/mole)", "potential", "tab:blue"),
        ("Kinetic Energy (kJ/mole)", "kinetic", "tab:orange"),
        ("Total Energy (kJ/mole)", "total", "black"),
    ):
        if name in cols:
            e = cols[name] * KJ_TO_KCAL
            ax_e.plot(t, e - e[0], label=label, color=color, lw=1.2)
    ax_e.set_ylabel("energy change from start\n(kcal/mol)")
    ax_e.legend(loc="best", fontsize="small")
    ax_e.grid(alpha=0.3)
    if "Temperature (K)" in cols:
        ax_t.plot(t, cols["Temperature (K)"], color="tab:red", lw=1.2)
    ax_t.set_ylabel("temperature (K)")
    ax_t.set_xlabel("time (ps)")
    ax_t.grid(alpha=0.3)
    if title:
        ax_e.set_title(title)
    _save(fig, path)
