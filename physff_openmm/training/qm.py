"""Quantum-chemistry labels with PySCF: energies, forces, Mulliken charges and
the atom / pair partition of the electron kinetic energy.

A level of theory is written ``"method[-dispersion]/basis[/df|/nodf]"``, case
insensitive, for example ``"b3lyp-d3bj/def2-svp"`` (the default), ``"hf/sto-3g"``,
``"wb97x-d3bj/def2-tzvp"`` or ``"pbe0/6-31g*/nodf"``. ``method`` is ``hf`` or any
functional PySCF's libxc knows; ``dispersion`` is ``d3bj``, ``d3zero`` or ``d4``
(through pyscf-dispersion, included in energies and gradients). Density fitting
(auxiliary basis def2-universal-jkfit) is on by default for DFT and off for HF;
a third field ``df`` or ``nodf`` overrides that.

``b3lyp`` means B3LYP with VWN5 correlation (PySCF's ``b3lyp5``), as in ORCA:
the shared conformer benchmark was computed with ORCA, and PySCF's own ``b3lyp``
(VWN-RPA, as in Gaussian) lands about 0.3 Hartree away for a 16-atom molecule.

Units at this boundary: positions in Angstrom, energies in Hartree, forces in
Hartree/Angstrom, charges in e. PySCF is imported inside the functions that
need it.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from ..errors import ConfigError, DependencyError, QMError, UnsupportedElementError
from ..units import BOHR_TO_ANGSTROM

__all__ = [
    "DEFAULT_LEVEL",
    "SUPPORTED_ELEMENTS",
    "QMLevel",
    "QMResult",
    "parse_level",
    "single_point",
    "kinetic_partition",
]

logger = logging.getLogger(__name__)

#: Level of theory of the default model's labels (same as the shared conformer benchmark).
DEFAULT_LEVEL = "b3lyp-d3bj/def2-svp"

#: Elements the force field supports, by atomic number.
SUPPORTED_ELEMENTS: dict[int, str] = {
    1: "H", 6: "C", 7: "N", 8: "O", 9: "F", 15: "P", 16: "S", 17: "Cl", 35: "Br",
}
_SYMBOL_TO_Z = {sym.lower(): z for z, sym in SUPPORTED_ELEMENTS.items()}

_INSTALL_HINT = "pip install physff-openmm[train]"
_VALID_EXAMPLES = (
    '"b3lyp-d3bj/def2-svp" (default), "hf/sto-3g", "wb97x-d3bj/def2-tzvp", '
    '"pbe0-d3zero/6-31g*", "b3lyp-d3bj/def2-svp/nodf"'
)
_DISPERSIONS = ("d3bj", "d3zero", "d4")
#: Method names rewritten before they reach PySCF (ORCA's B3LYP uses VWN5).
_METHOD_ALIASES = {"b3lyp": "b3lyp5"}
#: Functional names as simple-dftd3 / dftd4 know them, where PySCF's name differs.
_DISPERSION_NAMES = {"b3lyp5": "b3lyp"}
_AUX_BASIS = "def2-universal-jkfit"

# SCF settings, in one place.
_SCF_CONV_TOL = 1e-10        # Hartree, energy change between cycles
_SCF_CONV_TOL_GRAD = 1e-6    # orbital gradient norm
_SCF_MAX_CYCLES = 100        # first-order (DIIS) cycles, then as many second-order ones


# ---------------------------------------------------------------------------------
# levels of theory
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class QMLevel:
    """A parsed level of theory.

    Attributes
    ----------
    method : str
        ``"hf"`` or the functional name passed to PySCF (``"b3lyp5"`` for B3LYP).
    basis : str
        Orbital basis set name as PySCF knows it, lower case.
    dispersion : str or None
        ``"d3bj"``, ``"d3zero"``, ``"d4"`` or None.
    density_fit : bool
        Density fitting (RI-J / RI-JK) with the def2-universal-jkfit auxiliary basis.
    """

    method: str
    basis: str
    dispersion: str | None
    density_fit: bool

    @property
    def is_dft(self) -> bool:
        """True for a density functional, False for Hartree-Fock."""
        return self.method != "hf"

    @property
    def name(self) -> str:
        """Canonical level string; ``parse_level(level.name) == level``."""
        text = self.method + (f"-{self.dispersion}" if self.dispersion else "") + f"/{self.basis}"
        if self.density_fit != self.is_dft:  # only a non-default DF choice is spelled out
            text += "/df" if self.density_fit else "/nodf"
        return text

    def __str__(self) -> str:
        return self.name


def _import_pyscf():
    try:
        import pyscf  # noqa: F401
        from pyscf import dft, gto, scf  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyError(
            f"quantum-chemistry labels need PySCF and pyscf-dispersion: {_INSTALL_HINT}"
        ) from exc
    return pyscf


def _level_error(level: str, why: str) -> QMError:
    return QMError(f"invalid level of theory {level!r}: {why}. Valid examples: {_VALID_EXAMPLES}")


def parse_level(level: str | QMLevel) -> QMLevel:
    """Parse and validate a level-of-theory string.

    Parameters
    ----------
    level : str or QMLevel
        ``"method[-dispersion]/basis[/df|/nodf]"``, case insensitive, e.g.
        ``"b3lyp-d3bj/def2-svp"``. A :class:`QMLevel` is returned unchanged.

    Returns
    -------
    QMLevel
        ``b3lyp`` becomes ``b3lyp5`` (VWN5 correlation, as ORCA's B3LYP).

    Raises
    ------
    QMError
        Malformed string, unknown method, basis or dispersion parameters.
    DependencyError
        PySCF is not installed.
    """
    if isinstance(level, QMLevel):
        return level
    if not isinstance(level, str):
        raise _level_error(repr(level), "expected a string")
    return _parse_level_cached(level.strip().lower())


@lru_cache(maxsize=64)
def _parse_level_cached(text: str) -> QMLevel:
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(p.strip() for p in parts):
        raise _level_error(text, 'expected "method[-dispersion]/basis"')
    method_part, basis = parts[0].strip(), parts[1].strip()
    if any(c.isspace() for c in method_part + basis):
        raise _level_error(text, "whitespace inside the method or basis name")

    dispersion = None
    for disp in _DISPERSIONS:
        if method_part.endswith("-" + disp):
            method_part, dispersion = method_part[: -len(disp) - 1], disp
            break
    method = _METHOD_ALIASES.get(method_part, method_part)
    if not method:
        raise _level_error(text, "no method before the dispersion suffix")

    is_dft = method != "hf"
    density_fit = is_dft
    if len(parts) == 3:
        flag = parts[2].strip()
        if flag not in ("df", "nodf"):
            raise _level_error(text, f'third field must be "df" or "nodf", got {flag!r}')
        density_fit = flag == "df"

    _import_pyscf()
    if is_dft:
        _validate_functional(text, method, dispersion)
    _validate_basis(text, basis)
    if dispersion is not None:
        _validate_dispersion(text, method, dispersion)
    return QMLevel(method=method, basis=basis, dispersion=dispersion, density_fit=density_fit)


def _pyscf_xc(method: str, dispersion: str | None) -> str:
    """The xc string given to PySCF (it handles e.g. ``wb97x-d3bj`` -> wB97X-V without VV10)."""
    return f"{method}-{dispersion}" if dispersion else method


def _pyscf_disp(method: str, dispersion: str | None) -> str | None:
    """``mf.disp`` as ``"version:functional"``, with the functional as dftd3/dftd4 name it."""
    if dispersion is None:
        return None
    if method == "hf":
        return f"{dispersion}:hf"
    from pyscf.scf.dispersion import parse_disp

    disp_method, version, _ = parse_disp(_pyscf_xc(method, dispersion))
    disp_method = _DISPERSION_NAMES.get(disp_method, disp_method)
    return f"{version}:{disp_method}"


def _validate_functional(text: str, method: str, dispersion: str | None) -> None:
    from pyscf.dft import libxc
    from pyscf.scf.dispersion import parse_dft

    try:
        _, _, implied = parse_dft(method)
        xc_eval, _, _ = parse_dft(_pyscf_xc(method, dispersion))
        libxc.parse_xc(xc_eval)
    except (KeyError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise _level_error(text, f"unknown method {method!r} ({exc})") from None
    if implied is not None:
        raise _level_error(
            text,
            f"unsupported dispersion in method {method!r}; "
            f"use one of -{', -'.join(_DISPERSIONS)}",
        )


def _validate_basis(text: str, basis: str) -> None:
    import warnings

    from pyscf import gto

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gto.basis.load(basis, "H")
    except Exception as exc:  # noqa: BLE001 - PySCF raises several types for unknown names
        raise _level_error(text, f"unknown basis {basis!r} ({type(exc).__name__})") from None


def _validate_dispersion(text: str, method: str, dispersion: str) -> None:
    """Look the damping parameters up once, on H2 (about a millisecond)."""
    try:
        from pyscf import gto
        from pyscf.dispersion import dftd3, dftd4
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyError(
            f"dispersion corrections need pyscf-dispersion: {_INSTALL_HINT}"
        ) from exc
    version, disp_method = _pyscf_disp(method, dispersion).split(":")
    h2 = gto.M(atom="H 0 0 0; H 0 0 0.74", basis="sto-3g", verbose=0)
    try:
        if version == "d4":
            dftd4.DFTD4Dispersion(h2, xc=disp_method).get_dispersion()
        else:
            dftd3.DFTD3Dispersion(h2, xc=disp_method, version=version).get_dispersion()
    except Exception as exc:  # noqa: BLE001 - the C libraries raise RuntimeError or ValueError
        raise _level_error(
            text, f"no {dispersion} parameters for {disp_method!r} ({exc})"
        ) from None


# ---------------------------------------------------------------------------------
# single points
# ---------------------------------------------------------------------------------


@dataclass
class QMResult:
    """Labels of one structure.

    Attributes
    ----------
    energy : float
        Total energy including dispersion, Hartree.
    forces : numpy.ndarray or None
        (n_atoms, 3) Hartree/Angstrom, minus the energy gradient.
    kd_atom : numpy.ndarray or None
        (n_atoms,) Hartree, ``sum_{mu,nu on i} K_{mu nu} D_{mu nu}``.
    kd_pair : numpy.ndarray or None
        (n_atoms, n_atoms) Hartree, symmetric, zero diagonal,
        ``sum_{mu on i, nu on j} K D + sum_{mu on j, nu on i} K D``.
    mulliken : numpy.ndarray or None
        (n_atoms,) e, Mulliken charges.
    level : str
        Canonical level string (:attr:`QMLevel.name`, e.g. ``"b3lyp5-d3bj/def2-svp"``).
    """

    energy: float
    forces: np.ndarray | None
    kd_atom: np.ndarray | None
    kd_pair: np.ndarray | None
    mulliken: np.ndarray | None
    level: str


def _atomic_numbers(symbols: Sequence[str | int]) -> np.ndarray:
    """Atomic numbers of ``symbols`` (element symbols in any case, or atomic numbers)."""
    numbers = []
    for s in symbols:
        if isinstance(s, (int, np.integer)) and not isinstance(s, bool):
            z = int(s)
            if z not in SUPPORTED_ELEMENTS:
                raise UnsupportedElementError(
                    f"atomic number {z} is not supported; supported elements: "
                    f"{' '.join(SUPPORTED_ELEMENTS.values())}"
                )
        else:
            z = _SYMBOL_TO_Z.get(str(s).strip().lower())
            if z is None:
                raise UnsupportedElementError(
                    f"element {s!r} is not supported; supported elements: "
                    f"{' '.join(SUPPORTED_ELEMENTS.values())}"
                )
        numbers.append(z)
    if not numbers:
        raise ConfigError("no atoms given")
    return np.asarray(numbers, dtype=int)


def _as_positions(positions_angstrom, n_atoms: int) -> np.ndarray:
    pos = np.asarray(positions_angstrom, dtype=float)
    if pos.shape != (n_atoms, 3):
        raise ConfigError(f"positions must have shape ({n_atoms}, 3), got {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise ConfigError("positions contain NaN or infinite values")
    return pos


def _gpu_available() -> bool:
    if importlib.util.find_spec("gpu4pyscf") is None:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no driver, no device, broken CUDA install
        return False


def _to_numpy(x) -> np.ndarray:
    """A NumPy copy of a NumPy or CuPy array."""
    return np.asarray(x.get() if hasattr(x, "get") and not isinstance(x, np.ndarray) else x)


def _build_mol(numbers, positions, charge, spin, basis, max_memory_mb, verbose):
    import warnings

    from pyscf import gto

    if int(charge) != charge:
        raise ConfigError(f"charge must be an integer, got {charge!r}")
    if int(spin) != spin or spin < 0:
        raise ConfigError(f"spin (number of unpaired electrons, 2S) must be an integer >= 0, got {spin!r}")
    n_electrons = int(numbers.sum()) - int(charge)
    if n_electrons <= 0:
        raise QMError(f"charge {charge} leaves {n_electrons} electrons")
    if (n_electrons - int(spin)) % 2:
        if spin == 0:
            raise QMError(
                f"{n_electrons} electrons (charge {charge}) cannot form a closed shell with spin 0: "
                "the charge may be wrong (or pass spin=1 for a doublet)"
            )
        raise QMError(f"spin {spin} does not fit {n_electrons} electrons (charge {charge})")
    mol = gto.Mole()
    mol.atom = [(SUPPORTED_ELEMENTS[int(z)], tuple(p)) for z, p in zip(numbers, positions)]
    mol.unit = "Angstrom"
    mol.basis = basis
    mol.charge = int(charge)
    mol.spin = int(spin)
    mol.max_memory = float(max_memory_mb)
    mol.verbose = int(verbose)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "install basis-set-exchange" hints
            mol.build(parse_arg=False, dump_input=False)
    except Exception as exc:  # noqa: BLE001 - e.g. BasisNotFoundError for one element
        raise QMError(f"cannot build the molecule with basis {basis!r}: {exc}") from exc
    return mol


def _make_scf(mol, level: QMLevel):
    from pyscf import dft, scf

    restricted = mol.spin == 0
    if level.is_dft:
        mf = dft.RKS(mol) if restricted else dft.UKS(mol)
        mf.xc = _pyscf_xc(level.method, level.dispersion)
    else:
        mf = scf.RHF(mol) if restricted else scf.UHF(mol)
    mf.disp = _pyscf_disp(level.method, level.dispersion)
    if level.density_fit:
        mf = mf.density_fit(auxbasis=_AUX_BASIS)
    mf.conv_tol = _SCF_CONV_TOL
    mf.conv_tol_grad = _SCF_CONV_TOL_GRAD
    mf.max_cycle = _SCF_MAX_CYCLES
    return mf


def _run_scf(mf, on_gpu: bool):
    """Converge ``mf``; fall back to second-order SCF once; QMError if that fails too."""
    try:
        mf.kernel()
        if not mf.converged and not on_gpu:
            logger.info("SCF not converged after %d cycles; trying second-order SCF", mf.max_cycle)
            newton = mf.newton()
            newton.max_cycle = _SCF_MAX_CYCLES
            newton.kernel(mf.mo_coeff, mf.mo_occ)
            mf = newton.undo_soscf()
    except (QMError, ConfigError):
        raise
    except Exception as exc:  # noqa: BLE001 - PySCF / libxc / dftd failures
        raise QMError(f"SCF failed: {type(exc).__name__}: {exc}") from exc
    if not mf.converged:
        raise QMError(
            f"SCF did not converge (last energy {float(mf.e_tot):.8f} Hartree); "
            "check the geometry, charge and spin"
        )
    return mf


def _atom_indicator(mol) -> np.ndarray:
    """(n_ao, n_atoms) 0/1 matrix, 1 where basis function mu sits on atom i."""
    slices = mol.aoslice_by_atom()
    indicator = np.zeros((mol.nao_nr(), mol.natm))
    for i, (_, _, p0, p1) in enumerate(slices):
        indicator[p0:p1, i] = 1.0
    return indicator


def _kinetic_blocks(mol, dm_total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Atom and pair terms of Tr(D K), Hartree (see :func:`kinetic_partition`)."""
    kin = mol.intor_symmetric("int1e_kin")
    a = _atom_indicator(mol)
    blocks = a.T @ (kin * dm_total) @ a  # blocks[i, j] = sum_{mu on i, nu on j} K D
    atom_terms = np.diag(blocks).copy()
    pair_terms = blocks + blocks.T
    np.fill_diagonal(pair_terms, 0.0)
    return atom_terms, pair_terms


def _mulliken(mol, dm_total: np.ndarray) -> np.ndarray:
    """Mulliken charges, e (core charges count only valence electrons under ECPs)."""
    s = mol.intor_symmetric("int1e_ovlp")
    population = np.einsum("ij,ji->i", dm_total, s)
    return mol.atom_charges() - population @ _atom_indicator(mol)


def single_point(
    symbols: Sequence[str | int],
    positions_angstrom,
    charge: int = 0,
    level: str | QMLevel = DEFAULT_LEVEL,
    *,
    forces: bool = True,
    kinetic: bool = True,
    spin: int = 0,
    use_gpu: bool | None = None,
    max_memory_mb: float = 4000,
    verbose: int = 0,
) -> QMResult:
    """One SCF calculation with PySCF.

    Parameters
    ----------
    symbols : sequence of str or int
        Element symbols (any case) or atomic numbers; H C N O F S Cl Br P only.
    positions_angstrom : array_like
        (n_atoms, 3) Cartesian coordinates, Angstrom.
    charge : int
        Total charge, e.
    level : str or QMLevel
        Level of theory, see :func:`parse_level`.
    forces : bool
        Compute analytic forces (minus the gradient, dispersion included).
    kinetic : bool
        Compute the kinetic-energy partition ``kd_atom`` / ``kd_pair``.
    spin : int
        Number of unpaired electrons (2S). 0 runs restricted closed-shell SCF,
        anything else unrestricted.
    use_gpu : bool or None
        Run on gpu4pyscf. None: when gpu4pyscf is importable and a CUDA device is present.
    max_memory_mb : float
        PySCF memory limit, MB.
    verbose : int
        PySCF verbosity (0 = silent).

    Returns
    -------
    QMResult
        Energy in Hartree, forces in Hartree/Angstrom, kinetic terms in Hartree,
        Mulliken charges in e (always computed, they are cheap).

    Raises
    ------
    UnsupportedElementError
        An element outside H C N O F S Cl Br P.
    QMError
        Invalid level, odd electron count with ``spin=0``, or an SCF that does not converge.
    DependencyError
        PySCF (or gpu4pyscf with ``use_gpu=True``) is missing.
    """
    numbers = _atomic_numbers(symbols)
    positions = _as_positions(positions_angstrom, len(numbers))
    lvl = parse_level(level)
    _import_pyscf()

    if use_gpu is None:
        on_gpu = _gpu_available()
    elif use_gpu:
        if not _gpu_available():
            raise DependencyError(
                "use_gpu=True needs gpu4pyscf and a CUDA device: pip install gpu4pyscf-cuda12x"
            )
        on_gpu = True
    else:
        on_gpu = False

    mol = _build_mol(numbers, positions, charge, spin, lvl.basis, max_memory_mb, verbose)
    mf = _make_scf(mol, lvl)
    if on_gpu:  # pragma: no cover - no GPU in the test environment
        mf = mf.to_gpu()
    mf = _run_scf(mf, on_gpu)

    energy = float(mf.e_tot)
    dm = _to_numpy(mf.make_rdm1())
    dm_total = dm if dm.ndim == 2 else dm[0] + dm[1]

    force_array = None
    if forces:
        try:
            grad = _to_numpy(mf.nuc_grad_method().kernel())  # Hartree/Bohr
        except Exception as exc:  # noqa: BLE001
            raise QMError(f"gradient failed: {type(exc).__name__}: {exc}") from exc
        force_array = -grad / BOHR_TO_ANGSTROM

    kd_atom = kd_pair = None
    if kinetic:
        kd_atom, kd_pair = _kinetic_blocks(mol, dm_total)

    return QMResult(
        energy=energy,
        forces=force_array,
        kd_atom=kd_atom,
        kd_pair=kd_pair,
        mulliken=_mulliken(mol, dm_total),
        level=lvl.name,
    )


def kinetic_partition(
    symbols: Sequence[str | int],
    positions_angstrom,
    charge: int = 0,
    level: str | QMLevel = DEFAULT_LEVEL,
    *,
    spin: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Atom and pair contributions of the electron kinetic energy Tr(D K).

    With K the kinetic-energy matrix, D the total (alpha + beta) density matrix of
    the converged SCF and the basis functions grouped by atom::

        atom_terms[i]    = sum_{mu, nu on i} K_{mu nu} D_{mu nu}
        pair_terms[i, j] = sum_{mu on i, nu on j} K D + sum_{mu on j, nu on i} K D

    so that ``atom_terms.sum() + np.triu(pair_terms, 1).sum() == Tr(D K)``, which
    by the virial theorem is about minus the total energy.

    Parameters
    ----------
    symbols, positions_angstrom, charge, level, spin
        As in :func:`single_point` (positions in Angstrom, charge in e).

    Returns
    -------
    atom_terms : numpy.ndarray
        (n_atoms,) Hartree.
    pair_terms : numpy.ndarray
        (n_atoms, n_atoms) Hartree, symmetric, zero diagonal.
    """
    result = single_point(
        symbols, positions_angstrom, charge, level, forces=False, kinetic=True, spin=spin
    )
    return result.kd_atom, result.kd_pair
