"""GFN2-xTB through tblite: energies, forces, geometry optimization and
off-equilibrium sampling for training geometries.

Units at this boundary: positions in Angstrom, energies in Hartree, forces in
Hartree/Angstrom, temperatures in kelvin. tblite works in Bohr; the sampling
integrates in OpenMM's consistent MD units (nm, ps, amu, kJ/mol). Every
conversion factor comes from :mod:`physff_openmm.units` or :mod:`openmm.unit`.
tblite is imported inside the functions that need it.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from ..errors import ConfigError, DependencyError, QMError
from ..units import ANGSTROM_TO_NM, BOHR_TO_ANGSTROM, HARTREE_TO_KCAL, KCAL_TO_KJ
from .qm import _atomic_numbers

__all__ = ["xtb_energy_forces", "xtb_lowest_state", "xtb_charges", "charge_targets", "attach_charge_targets", "xtb_optimize", "sample_off_equilibrium"]

_INSTALL_HINT = "pip install physff-openmm[train]"
_METHOD = "GFN2-xTB"

#: Hartree -> kJ/mol
_HARTREE_TO_KJ = HARTREE_TO_KCAL * KCAL_TO_KJ
#: Hartree/Angstrom -> kJ/(mol nm)
_FORCE_TO_MD = _HARTREE_TO_KJ / ANGSTROM_TO_NM

# Sampling settings, in one place.
_MD_TIMESTEP_FS = 0.5          # fs, velocity-Verlet step
_MD_STRIDE = 20                # MD steps between snapshots
_HESSIAN_STEP_ANGSTROM = 5e-3  # Angstrom, central-difference step of the Hessian
_MIN_MODE_WAVENUMBER = 100.0   # cm^-1, floor on mode frequencies for thermal amplitudes


def _md_constants() -> tuple[float, float, float]:
    """(R in kJ/(mol K), MD time step in ps, speed of light in cm/ps), from openmm.unit."""
    import openmm.unit as u
    from openmm.unit import constants as c

    gas_constant = c.MOLAR_GAS_CONSTANT_R.value_in_unit(u.kilojoule_per_mole / u.kelvin)
    timestep = (_MD_TIMESTEP_FS * u.femtosecond).value_in_unit(u.picosecond)
    light = c.SPEED_OF_LIGHT_C.value_in_unit(u.centimeter / u.picosecond)
    return gas_constant, timestep, light


def _masses_amu(numbers: np.ndarray) -> np.ndarray:
    import openmm.unit as u
    from openmm.app.element import Element

    return np.array(
        [Element.getByAtomicNumber(int(z)).mass.value_in_unit(u.dalton) for z in numbers]
    )


class _XTB:
    """A tblite calculator for one molecule; positions in Angstrom; ``solvent`` adds ALPB implicit solvation;
    ``uhf`` unpaired electrons (default: the electron count's parity, a singlet or a doublet)."""

    def __init__(self, numbers, positions_angstrom, charge, solvent: str | None = None, uhf: int | None = None):
        try:
            from tblite.interface import Calculator
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise DependencyError(f"GFN2-xTB needs tblite: {_INSTALL_HINT}") from exc
        self.numbers = _atomic_numbers(numbers)
        pos = np.asarray(positions_angstrom, dtype=float)
        n = len(self.numbers)
        if pos.shape != (n, 3):
            raise ConfigError(f"positions must have shape ({n}, 3), got {pos.shape}")
        if int(charge) != charge:
            raise ConfigError(f"charge must be an integer, got {charge!r}")
        n_electrons = int(self.numbers.sum()) - int(charge)
        if n_electrons < 0:
            raise QMError(f"charge {charge} leaves {n_electrons} electrons")
        if uhf is not None and not (0 <= int(uhf) <= n_electrons and (n_electrons - int(uhf)) % 2 == 0):
            raise QMError(f"{uhf} unpaired electrons do not fit {n_electrons} electrons")
        try:
            self._calc = Calculator(
                _METHOD,
                self.numbers,
                pos / BOHR_TO_ANGSTROM,
                charge=float(charge),
                uhf=n_electrons % 2 if uhf is None else int(uhf),
            )
            self._calc.set("verbosity", 0)
            if solvent:
                self._calc.add("alpb-solvation", str(solvent))
        except Exception as exc:  # noqa: BLE001 - tblite raises RuntimeError / ValueError
            raise QMError(f"cannot set up {_METHOD}: {exc}") from exc
        self._restart = None

    def __call__(self, positions_angstrom) -> tuple[float, np.ndarray]:
        """Energy (Hartree) and gradient (Hartree/Angstrom) at ``positions_angstrom``."""
        pos = np.asarray(positions_angstrom, dtype=float).reshape(-1, 3)
        if not np.all(np.isfinite(pos)):
            raise QMError(f"{_METHOD}: non-finite positions")
        try:
            self._calc.update(pos / BOHR_TO_ANGSTROM)
            res = self._calc.singlepoint(self._restart)
        except Exception as exc:  # noqa: BLE001
            self._restart = None
            raise QMError(f"{_METHOD} single point failed: {exc}") from exc
        self._restart = res
        return float(res.get("energy")), np.asarray(res.get("gradient")) / BOHR_TO_ANGSTROM


def xtb_energy_forces(
    numbers: Sequence[int | str], positions_angstrom, charge: int = 0, *, uhf: int | None = None
) -> tuple[float, np.ndarray]:
    """GFN2-xTB energy and forces.

    Parameters
    ----------
    numbers : sequence of int or str
        Atomic numbers (or element symbols); H C N O F S Cl Br P.
    positions_angstrom : array_like
        (n_atoms, 3) Angstrom.
    charge : int
        Total charge, e. An odd electron count runs as a doublet.
    uhf : int or None
        Unpaired electrons (None: the electron count's parity).

    Returns
    -------
    energy : float
        Hartree.
    forces : numpy.ndarray
        (n_atoms, 3) Hartree/Angstrom.
    """
    calc = _XTB(numbers, positions_angstrom, charge, uhf=uhf)
    energy, grad = calc(positions_angstrom)
    return energy, -grad


def xtb_lowest_state(
    numbers: Sequence[int | str], positions_angstrom, charge: int = 0, spins: Sequence[int | None] = (None,)
) -> tuple[float, np.ndarray]:
    """GFN2-xTB energy and forces (as :func:`xtb_energy_forces`) of the lowest of the states with
    ``spins`` unpaired electrons (None: the electron count's parity) whose SCF converges: e.g.
    ``(None, 2)`` for a bond being broken, the closed shell near its length and the triplet of two
    radicals beyond.

    Raises
    ------
    QMError
        No state converges (the last state's error).
    """
    states, error = [], None
    for uhf in spins:
        try:
            states.append(xtb_energy_forces(numbers, positions_angstrom, charge, uhf=uhf))
        except QMError as exc:
            error = exc
    if not states:
        raise error if error is not None else QMError("no spin state to compute")
    return min(states, key=lambda state: state[0])


def xtb_charges(numbers: Sequence[int | str], positions_angstrom, charge: int = 0) -> np.ndarray:
    """GFN2-xTB atomic partial charges (e; tblite's, summing to ``charge``) at one geometry."""
    calc = _XTB(numbers, positions_angstrom, charge)
    calc(positions_angstrom)
    return np.asarray(calc._restart.get("charges"), dtype=float)  # the single point's tblite result


def charge_targets(record, *, charged_only: bool = True) -> np.ndarray:
    """GFN2-xTB charges of each fragment of a record, alone, at the record's lowest-energy conformer.

    The model's charges depend on each molecule's topology only (never on its
    partner in a complex), so the target of a fragment is that fragment by itself,
    at one geometry: the conformer of lowest energy where energies exist (the relaxed
    frame of a scan), else the first. Topologically equivalent atoms (RDKit's canonical
    ranks without tie breaking, which heed bond orders: the H of a methyl, the O of a
    sulfonyl group, not a carboxylate's two O), whose model charges are equal, get the
    mean of their charges.

    Parameters
    ----------
    record : MoleculeRecord
    charged_only : bool
        Only fragments with a net formal charge get targets (the others stay NaN).

    Returns
    -------
    numpy.ndarray
        (n_atoms,) e; each labelled fragment sums to its formal charge; NaN where unlabelled.
    """
    from rdkit import Chem

    from ..molecule import fragment_atom_indices

    n = record.n_atoms
    out = np.full(n, np.nan)
    if charged_only and not np.any(record.formal_charges):
        return out  # no charged fragment
    mol = record.to_rdkit()
    energy = np.asarray(record.energy, dtype=float)
    row = int(np.nanargmin(energy)) if np.isfinite(energy).any() else 0
    for frag in fragment_atom_indices(mol):
        atoms = np.asarray(frag)
        charge = int(record.formal_charges[atoms].sum())
        if charged_only and charge == 0:
            continue
        out[atoms] = xtb_charges(record.species[atoms], record.positions[row][atoms], charge)
    if np.isfinite(out).any():
        rank = np.asarray(Chem.CanonicalRankAtoms(mol, breakTies=False))
        sums = np.bincount(rank, weights=np.nan_to_num(out), minlength=n)
        counts = np.bincount(rank, minlength=n)
        out = np.where(np.isfinite(out), sums[rank] / counts[rank], np.nan)
    return out


def attach_charge_targets(records, *, charged_only: bool = True) -> dict[str, int]:
    """Set ``charge_target`` (:func:`charge_targets`) on every record; records whose
    single point fails keep none. Returns counts: labelled records, atoms, failures."""
    counts = {"records": 0, "atoms": 0, "failed": 0}
    for rec in records:
        try:
            target = charge_targets(rec, charged_only=charged_only)
        except QMError:
            counts["failed"] += 1
            continue
        labelled = int(np.isfinite(target).sum())
        rec.charge_target = target if labelled else None
        counts["records"] += bool(labelled)
        counts["atoms"] += labelled
    return counts


def xtb_energies(numbers: Sequence[int | str], geometries, charge: int = 0, *, uhf: int | None = None) -> list[float | None]:
    """GFN2-xTB energies (Hartree) along a path of geometries, e.g. a bond scan.

    One calculator walks the path: each SCF starts from the previous point's
    wavefunction, which is what makes stretched bonds converge. A point whose SCF
    does not converge is None, and the next one starts afresh. ``uhf``: unpaired
    electrons (default: the electron count's parity; 2 for a triplet).
    """
    geometries = [np.asarray(g, dtype=float) for g in geometries]
    if not geometries:
        return []
    calc = _XTB(numbers, geometries[0], charge, uhf=uhf)
    out: list[float | None] = []
    for g in geometries:
        try:
            out.append(calc(g)[0])
        except QMError:
            out.append(None)
    return out


def xtb_optimize(
    numbers: Sequence[int | str],
    positions_angstrom,
    charge: int = 0,
    *,
    fmax: float = 1e-3,
    max_steps: int = 500,
    solvent: str | None = None,
) -> tuple[np.ndarray, float]:
    """Minimize the GFN2-xTB energy with L-BFGS (scipy) on analytic gradients.

    Parameters
    ----------
    numbers, positions_angstrom, charge
        As in :func:`xtb_energy_forces`.
    fmax : float
        Convergence threshold on every atom's force norm, Hartree/Angstrom.
    max_steps : int
        Maximum number of L-BFGS iterations. When it is reached before ``fmax``,
        a :class:`RuntimeWarning` is issued and the last geometry returned.
    solvent : str, optional
        Minimize on the GFN2-xTB + ALPB implicit-solvent surface (a tblite solvent
        name, e.g. ``"water"``); the energy returned is then that surface's.

    Returns
    -------
    positions : numpy.ndarray
        (n_atoms, 3) optimized positions, Angstrom.
    energy : float
        Energy at those positions, Hartree.
    """
    from scipy.optimize import minimize

    if fmax <= 0 or max_steps < 1:
        raise ConfigError(f"need fmax > 0 and max_steps >= 1, got {fmax!r}, {max_steps!r}")
    calc = _XTB(numbers, positions_angstrom, charge, solvent)
    x0 = np.asarray(positions_angstrom, dtype=float).ravel()

    def fun(x):
        energy, grad = calc(x)
        return energy, grad.ravel()

    x = x0
    steps_left = int(max_steps)
    # L-BFGS can stop in its line search when the energy change reaches the SCF
    # noise; restarting from the last point with a fresh memory usually finishes.
    for _ in range(3):
        res = minimize(
            fun,
            x,
            jac=True,
            method="L-BFGS-B",
            options={
                "maxiter": steps_left,
                "gtol": fmax / np.sqrt(3.0),  # per component, so every atom's norm <= fmax
                "ftol": 1e-15,
                "maxcor": 30,
            },
        )
        x = res.x
        steps_left -= int(res.nit)
        energy, grad = calc(x)
        if np.linalg.norm(grad.reshape(-1, 3), axis=1).max() <= fmax or steps_left <= 0:
            break
    residual = np.linalg.norm(grad.reshape(-1, 3), axis=1).max()
    if residual > fmax:
        warnings.warn(
            f"{_METHOD} optimization stopped with a residual force of {residual:.2e} "
            f"Hartree/Angstrom (fmax {fmax:.1e}): {res.message}",
            RuntimeWarning,
            stacklevel=2,
        )
    return x.reshape(-1, 3), energy


def _rigid_body_basis(positions_nm: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Orthonormal basis (3n, r) of mass-weighted translations and rotations (r = 5 or 6)."""
    sqrt_m = np.sqrt(masses)
    centre = (masses[:, None] * positions_nm).sum(0) / masses.sum()
    r = positions_nm - centre
    vectors = []
    for axis in np.eye(3):
        vectors.append((sqrt_m[:, None] * axis[None, :]).ravel())
        vectors.append((sqrt_m[:, None] * np.cross(axis[None, :], r)).ravel())
    b = np.array(vectors).T  # (3n, 6)
    u, s, _ = np.linalg.svd(b, full_matrices=False)
    rank = int((s > 1e-8 * s.max()).sum())  # 5 for a linear molecule
    return u[:, :rank]


def _hessian(calc: _XTB, positions_angstrom: np.ndarray) -> np.ndarray:
    """(3n, 3n) Hessian, Hartree/Angstrom^2, central differences of analytic gradients."""
    x0 = positions_angstrom.ravel()
    h = _HESSIAN_STEP_ANGSTROM
    hess = np.empty((x0.size, x0.size))
    for k in range(x0.size):
        xp, xm = x0.copy(), x0.copy()
        xp[k] += h
        xm[k] -= h
        hess[k] = (calc(xp)[1].ravel() - calc(xm)[1].ravel()) / (2.0 * h)
    return 0.5 * (hess + hess.T)


def _sample_md(calc, positions, masses, n_samples, temperature_k, rng, stride=_MD_STRIDE):
    gas_constant, dt, _ = _md_constants()
    kt = gas_constant * temperature_k  # kJ/mol
    x = positions * ANGSTROM_TO_NM  # nm
    v = rng.standard_normal(x.shape) * np.sqrt(kt / masses)[:, None]  # nm/ps
    v -= (masses[:, None] * v).sum(0) / masses.sum()

    def force(x_nm):
        return -calc(x_nm / ANGSTROM_TO_NM)[1] * _FORCE_TO_MD  # kJ/(mol nm)

    inv_m = 1.0 / masses[:, None]
    f = force(x)
    frames = []
    for step in range(1, n_samples * stride + 1):
        v += 0.5 * dt * f * inv_m
        x = x + dt * v
        f = force(x)
        v += 0.5 * dt * f * inv_m
        if step % stride == 0:
            frames.append(x / ANGSTROM_TO_NM)
    return np.array(frames)


def _sample_normal_modes(calc, positions, masses, n_samples, temperature_k, rng, stride=None):
    gas_constant, _, light = _md_constants()
    kt = gas_constant * temperature_k  # kJ/mol
    n = len(masses)
    if n == 1:
        return np.repeat(positions[None], n_samples, axis=0)
    hess = _hessian(calc, positions) * _HARTREE_TO_KJ / ANGSTROM_TO_NM**2  # kJ/(mol nm^2)
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(masses), 3)
    hess_mw = hess * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]  # ps^-2
    rigid = _rigid_body_basis(positions * ANGSTROM_TO_NM, masses)
    u, _, _ = np.linalg.svd(rigid, full_matrices=True)
    internal = u[:, rigid.shape[1]:]  # orthonormal complement, (3n, 3n - r)
    eigvals, vecs = np.linalg.eigh(internal.T @ hess_mw @ internal)
    modes = internal @ vecs  # mass-weighted normal modes, columns
    omega_min = 2.0 * np.pi * light * _MIN_MODE_WAVENUMBER  # rad/ps
    curvature = np.maximum(np.abs(eigvals), omega_min**2)
    sigma = np.sqrt(kt / curvature)  # nm sqrt(amu)
    q = rng.standard_normal((n_samples, len(eigvals))) * sigma
    displacement_nm = (q @ modes.T) * inv_sqrt_m  # (n_samples, 3n)
    return positions[None] + displacement_nm.reshape(n_samples, n, 3) / ANGSTROM_TO_NM


def sample_off_equilibrium(
    numbers: Sequence[int | str],
    positions_angstrom,
    charge: int = 0,
    n_samples: int = 4,
    *,
    method: str = "md",
    temperature_k: float = 500.0,
    seed: int = 0,
    stride: int = _MD_STRIDE,
    solvent: str | None = None,
) -> np.ndarray:
    """Thermally distorted geometries around a (minimized) structure.

    Parameters
    ----------
    numbers, positions_angstrom, charge
        As in :func:`xtb_energy_forces`.
    n_samples : int
        Number of geometries.
    method : {"md", "normal_modes"}
        ``"md"``: velocity-Verlet MD on GFN2-xTB forces (0.5 fs step), started from
        ``positions_angstrom`` with Maxwell-Boltzmann velocities at ``temperature_k``
        (centre-of-mass motion removed); a snapshot every ``stride`` steps (default
        20: 10 fs). Starting at a minimum, equipartition leaves the geometry at
        roughly half that temperature. ``"normal_modes"``: independent classical thermal displacements
        along the normal modes of the finite-difference mass-weighted Hessian at
        ``positions_angstrom`` (which should be a minimum); amplitudes
        ``sqrt(kT) / omega``, with |omega| floored at 100 cm^-1.
    temperature_k : float
        Temperature, K.
    seed : int
        Random seed; the result is deterministic for a given seed.
    stride : int
        MD steps between snapshots (``"md"`` only).
    solvent : str, optional
        Sample on the GFN2-xTB + ALPB implicit-solvent surface (a tblite solvent
        name, e.g. ``"water"``): zwitterions and ions keep their protons there,
        where in the gas phase a proton can move to the anion.

    Returns
    -------
    numpy.ndarray
        (n_samples, n_atoms, 3) positions, Angstrom.
    """
    if n_samples < 1:
        raise ConfigError(f"n_samples must be >= 1, got {n_samples!r}")
    if not temperature_k > 0:
        raise ConfigError(f"temperature_k must be > 0, got {temperature_k!r}")
    if method not in ("md", "normal_modes"):
        raise ConfigError(f"unknown sampling method {method!r}; valid: 'md', 'normal_modes'")
    if int(stride) != stride or stride < 1:
        raise ConfigError(f"stride must be an integer >= 1, got {stride!r}")
    calc = _XTB(numbers, positions_angstrom, charge, solvent)
    positions = np.asarray(positions_angstrom, dtype=float)
    masses = _masses_amu(calc.numbers)
    rng = np.random.default_rng(seed)
    sampler = _sample_md if method == "md" else _sample_normal_modes
    return sampler(calc, positions, masses, int(n_samples), float(temperature_k), rng, int(stride))
