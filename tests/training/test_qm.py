"""Quantum-chemistry labels (PySCF), GFN2-xTB (tblite) and conformers.

References come from independent code paths: PySCF driven directly in the test,
explicit loops over atoms, central finite differences of the energy. QM runs on
water-sized molecules with minimal or small basis sets.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyscf")

from physff_openmm.errors import (  # noqa: E402
    ConfigError,
    DependencyError,
    MissingHydrogenError,
    QMError,
    UnsupportedElementError,
)
from physff_openmm.training import qm  # noqa: E402

# Tolerances, with units.
TOL_PARTITION_SUM = 1e-8      # Hartree: sum of KD terms vs Tr(DK), pure algebra
TOL_KD_VS_DIRECT = 1e-6       # Hartree: our SCF vs a direct PySCF SCF (same settings)
TOL_ENERGY_VS_DIRECT = 1e-8   # Hartree
TOL_QM_FORCE_FD = 1e-5        # Hartree/Angstrom: HF/STO-3G analytic vs central differences
TOL_XTB_FORCE_FD = 1e-5       # Hartree/Angstrom: GFN2-xTB (SCF noise ~1e-7)
VIRIAL_REL = 0.02             # |Tr(DK) + E| / |E| for HF near equilibrium
FD_STEP = 1e-4                # Angstrom



@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Water-sized jobs run fastest on one OpenMP thread (no spinning on a busy machine)."""
    from pyscf import lib

    previous = lib.num_threads()
    lib.num_threads(1)
    yield
    lib.num_threads(previous)


WATER_SYMBOLS = ["O", "H", "H"]
WATER_NUMBERS = [8, 1, 1]
WATER = np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]])
# slightly distorted, so no force component vanishes by symmetry
WATER_DISTORTED = WATER + np.array([[0.01, -0.02, 0.0], [0.03, 0.0, 0.02], [-0.02, 0.01, -0.03]])


def _direct_pyscf(level: str, symbols, positions, charge=0, spin=0):
    """SCF run with PySCF directly: (mol, converged mf, total density matrix)."""
    from pyscf import dft, gto, scf

    mol = gto.M(
        atom=[(s, tuple(p)) for s, p in zip(symbols, positions)],
        unit="Angstrom", basis=level.split("/")[1], charge=charge, spin=spin, verbose=0,
    )
    method = level.split("/")[0]
    if method == "hf":
        mf = scf.RHF(mol) if spin == 0 else scf.UHF(mol)
    else:
        assert method == "b3lyp"
        mf = dft.RKS(mol, xc="b3lyp5").density_fit(auxbasis="def2-universal-jkfit")
    # the same convergence thresholds as qm.py: kinetic terms are first order in
    # the SCF error (about 2e-6 Hartree apart with thresholds 10x tighter here)
    mf.conv_tol = qm._SCF_CONV_TOL
    mf.conv_tol_grad = qm._SCF_CONV_TOL_GRAD
    mf.kernel()
    assert mf.converged
    dm = mf.make_rdm1()
    if dm.ndim == 3:
        dm = dm[0] + dm[1]
    return mol, mf, dm


def _kd_by_loops(mol, dm):
    """Atom and pair kinetic terms with explicit loops over atoms (independent of qm.py)."""
    kin = mol.intor("int1e_kin")
    n = mol.natm
    slices = [slice(p0, p1) for _, _, p0, p1 in mol.aoslice_by_atom()]
    atom = np.zeros(n)
    pair = np.zeros((n, n))
    for i in range(n):
        atom[i] = np.sum(kin[slices[i], slices[i]] * dm[slices[i], slices[i]])
        for j in range(n):
            if i != j:
                pair[i, j] = np.sum(kin[slices[i], slices[j]] * dm[slices[i], slices[j]]) + np.sum(
                    kin[slices[j], slices[i]] * dm[slices[j], slices[i]]
                )
    return atom, pair


# --------------------------------------------------------------------------------
# kinetic-energy partition
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["hf/sto-3g", "b3lyp/6-31g"])
def test_kinetic_partition_matches_direct_pyscf(level):
    atom, pair = qm.kinetic_partition(WATER_SYMBOLS, WATER, 0, level)
    mol, mf, dm = _direct_pyscf(level, WATER_SYMBOLS, WATER)
    ref_atom, ref_pair = _kd_by_loops(mol, dm)
    trace = np.einsum("ij,ji", dm, mol.intor("int1e_kin"))

    assert atom.shape == (3,) and pair.shape == (3, 3)
    np.testing.assert_allclose(atom, ref_atom, rtol=0, atol=TOL_KD_VS_DIRECT)
    np.testing.assert_allclose(pair, ref_pair, rtol=0, atol=TOL_KD_VS_DIRECT)
    np.testing.assert_array_equal(pair, pair.T)
    np.testing.assert_array_equal(np.diag(pair), 0.0)
    assert abs(atom.sum() + np.triu(pair, 1).sum() - trace) < TOL_KD_VS_DIRECT
    # the partition itself is exact for the reference density
    assert abs(ref_atom.sum() + np.triu(ref_pair, 1).sum() - trace) < TOL_PARTITION_SUM


def test_partition_is_exact_for_a_given_density():
    """The vectorized block sums equal the loops and add up to Tr(DK) to 1e-8 Hartree."""
    mol, _, dm = _direct_pyscf("hf/sto-3g", WATER_SYMBOLS, WATER_DISTORTED)
    atom, pair = qm._kinetic_blocks(mol, dm)
    ref_atom, ref_pair = _kd_by_loops(mol, dm)
    np.testing.assert_allclose(atom, ref_atom, rtol=0, atol=1e-12)
    np.testing.assert_allclose(pair, ref_pair, rtol=0, atol=1e-12)
    trace = np.einsum("ij,ji", dm, mol.intor("int1e_kin"))
    assert abs(atom.sum() + np.triu(pair, 1).sum() - trace) < TOL_PARTITION_SUM


def test_virial_hf():
    """Near equilibrium Tr(DK) ~ -E (virial theorem), here for HF/STO-3G water."""
    res = qm.single_point(WATER_SYMBOLS, WATER, 0, "hf/sto-3g", forces=False)
    kinetic = res.kd_atom.sum() + np.triu(res.kd_pair, 1).sum()
    assert abs(kinetic + res.energy) / abs(res.energy) < VIRIAL_REL


def test_kinetic_partition_open_shell_uses_alpha_plus_beta():
    """OH radical, UHF: the partition uses D_alpha + D_beta."""
    symbols, pos = ["O", "H"], np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.97]])
    res = qm.single_point(symbols, pos, 0, "hf/sto-3g", forces=False, spin=1)
    mol, mf, dm = _direct_pyscf("hf/sto-3g", symbols, pos, spin=1)
    ref_atom, ref_pair = _kd_by_loops(mol, dm)
    assert abs(res.energy - mf.e_tot) < 1e-7
    np.testing.assert_allclose(res.kd_atom, ref_atom, atol=TOL_KD_VS_DIRECT)
    np.testing.assert_allclose(res.kd_pair, ref_pair, atol=TOL_KD_VS_DIRECT)


# --------------------------------------------------------------------------------
# single points: energies, forces, charges
# --------------------------------------------------------------------------------


def _fd_forces(level, positions, symbols=WATER_SYMBOLS):
    fd = np.zeros_like(positions)
    for i in range(len(positions)):
        for k in range(3):
            plus, minus = positions.copy(), positions.copy()
            plus[i, k] += FD_STEP
            minus[i, k] -= FD_STEP
            e_plus = qm.single_point(symbols, plus, 0, level, forces=False, kinetic=False).energy
            e_minus = qm.single_point(symbols, minus, 0, level, forces=False, kinetic=False).energy
            fd[i, k] = -(e_plus - e_minus) / (2.0 * FD_STEP)
    return fd


def test_forces_match_finite_differences_hf():
    res = qm.single_point(WATER_SYMBOLS, WATER_DISTORTED, 0, "hf/sto-3g", kinetic=False)
    assert res.forces.shape == (3, 3)
    np.testing.assert_allclose(res.forces, _fd_forces("hf/sto-3g", WATER_DISTORTED),
                               rtol=0, atol=TOL_QM_FORCE_FD)
    np.testing.assert_allclose(res.forces.sum(0), 0.0, atol=1e-8)  # translation invariance


def test_dispersion_in_energy_and_forces():
    """hf-d3bj differs from hf by the D3(BJ) energy, and its forces include the D3 gradient."""
    plain = qm.single_point(WATER_SYMBOLS, WATER_DISTORTED, 0, "hf/sto-3g", kinetic=False)
    disp = qm.single_point(WATER_SYMBOLS, WATER_DISTORTED, 0, "hf-d3bj/sto-3g", kinetic=False)
    assert -1e-2 < disp.energy - plain.energy < -1e-5
    fd = _fd_forces("hf-d3bj/sto-3g", WATER_DISTORTED)
    np.testing.assert_allclose(disp.forces, fd, rtol=0, atol=TOL_QM_FORCE_FD)
    assert np.abs(disp.forces - plain.forces).max() > 10 * TOL_QM_FORCE_FD


def test_b3lyp_is_vwn5_and_matches_direct_pyscf():
    res = qm.single_point(WATER_SYMBOLS, WATER, 0, "b3lyp/6-31g", forces=False, kinetic=False)
    _, mf, _ = _direct_pyscf("b3lyp/6-31g", WATER_SYMBOLS, WATER)  # b3lyp5, DF
    assert abs(res.energy - mf.e_tot) < 1e-7
    assert res.level == "b3lyp5/6-31g"


def test_mulliken_charges_sum_to_total_charge():
    hydroxide = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.97]])
    res = qm.single_point(["O", "H"], hydroxide, -1, "hf/sto-3g", forces=False, kinetic=False)
    assert abs(res.mulliken.sum() + 1.0) < 1e-8
    assert res.mulliken[0] < res.mulliken[1]
    water = qm.single_point(WATER_SYMBOLS, WATER, 0, "hf/sto-3g", forces=False, kinetic=False)
    from pyscf import gto, scf

    mf = scf.RHF(gto.M(atom=list(zip(WATER_SYMBOLS, map(tuple, WATER))), basis="sto-3g", verbose=0))
    mf.kernel()
    np.testing.assert_allclose(water.mulliken, mf.mulliken_pop(verbose=0)[1], atol=1e-6)


def test_optional_outputs_are_none_when_not_requested():
    res = qm.single_point(WATER_NUMBERS, WATER, level="hf/sto-3g", forces=False, kinetic=False)
    assert res.forces is None and res.kd_atom is None and res.kd_pair is None
    assert isinstance(res.energy, float) and res.level == "hf/sto-3g"


def test_unsupported_element():
    with pytest.raises(UnsupportedElementError, match="Si"):
        qm.single_point(["Si", "H", "H", "H", "H"], np.zeros((5, 3)), level="hf/sto-3g")
    with pytest.raises(UnsupportedElementError, match="atomic number 14"):
        qm.kinetic_partition([14], np.zeros((1, 3)), 0, "hf/sto-3g")


def test_odd_electrons_with_spin_zero():
    with pytest.raises(QMError, match="charge may be wrong"):
        qm.single_point(WATER_SYMBOLS, WATER, 1, "hf/sto-3g")
    with pytest.raises(QMError, match="spin 2 does not fit"):
        qm.single_point(WATER_SYMBOLS, WATER, 1, "hf/sto-3g", spin=2)


def test_bad_positions_shape():
    with pytest.raises(ConfigError, match="shape"):
        qm.single_point(WATER_SYMBOLS, WATER[:2], 0, "hf/sto-3g")


def test_scf_not_converged(monkeypatch):
    monkeypatch.setattr(qm, "_SCF_MAX_CYCLES", 1)
    with pytest.raises(QMError, match="did not converge"):
        qm.single_point(WATER_SYMBOLS, WATER, 0, "hf/sto-3g", forces=False)


def test_gpu_requested_but_missing(monkeypatch):
    monkeypatch.setattr(qm, "_gpu_available", lambda: False)
    with pytest.raises(DependencyError, match="gpu4pyscf"):
        qm.single_point(WATER_SYMBOLS, WATER, 0, "hf/sto-3g", use_gpu=True)


# --------------------------------------------------------------------------------
# levels of theory
# --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, method, basis, dispersion, density_fit",
    [
        ("b3lyp-d3bj/def2-svp", "b3lyp5", "def2-svp", "d3bj", True),
        ("B3LYP-D3BJ/def2-SVP", "b3lyp5", "def2-svp", "d3bj", True),
        ("hf/sto-3g", "hf", "sto-3g", None, False),
        ("wb97x-d3bj/def2-tzvp", "wb97x", "def2-tzvp", "d3bj", True),
        ("pbe0-d4/def2-svp", "pbe0", "def2-svp", "d4", True),
        ("pbe0-d3zero/6-31g*", "pbe0", "6-31g*", "d3zero", True),
        ("b3lyp/def2-svp/nodf", "b3lyp5", "def2-svp", None, False),
        ("hf-d3bj/sto-3g/df", "hf", "sto-3g", "d3bj", True),
    ],
)
def test_parse_level(text, method, basis, dispersion, density_fit):
    level = qm.parse_level(text)
    assert level == qm.QMLevel(method, basis, dispersion, density_fit)
    assert qm.parse_level(level.name) == level  # the canonical name round-trips


def test_default_level_maps_b3lyp_to_vwn5():
    level = qm.parse_level(qm.DEFAULT_LEVEL)
    assert level.method == "b3lyp5" and level.dispersion == "d3bj" and level.density_fit
    assert qm.parse_level("b3lyp5-d3bj/def2-svp") == level


@pytest.mark.parametrize(
    "text, match",
    [
        ("nosuchfunctional/def2-svp", "unknown method 'nosuchfunctional'"),
        ("b3lyp/nosuchbasis", "unknown basis 'nosuchbasis'"),
        ("b3lyp", "expected"),
        ("b3lyp-d3bj/def2-svp/x", "third field"),
        ("/def2-svp", "expected"),
        ("b3lyp-d3/def2-svp", "unsupported dispersion"),
        ("b3lyp-d3bj def2-svp", "expected"),
    ],
)
def test_parse_level_errors(text, match):
    with pytest.raises(QMError, match=match) as info:
        qm.parse_level(text)
    assert "b3lyp-d3bj/def2-svp" in str(info.value)  # lists valid examples


# --------------------------------------------------------------------------------
# GFN2-xTB
# --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xtb():
    pytest.importorskip("tblite")
    from physff_openmm.training import xtb as module

    return module


@pytest.fixture(scope="module")
def water_xtb_minimum(xtb):
    return xtb.xtb_optimize(WATER_NUMBERS, WATER, fmax=1e-4)


def test_xtb_forces_match_finite_differences(xtb):
    energy, forces = xtb.xtb_energy_forces(WATER_NUMBERS, WATER_DISTORTED)
    assert isinstance(energy, float) and forces.shape == (3, 3)
    fd = np.zeros_like(forces)
    for i in range(3):
        for k in range(3):
            plus, minus = WATER_DISTORTED.copy(), WATER_DISTORTED.copy()
            plus[i, k] += FD_STEP
            minus[i, k] -= FD_STEP
            fd[i, k] = -(
                xtb.xtb_energy_forces(WATER_NUMBERS, plus)[0]
                - xtb.xtb_energy_forces(WATER_NUMBERS, minus)[0]
            ) / (2.0 * FD_STEP)
    np.testing.assert_allclose(forces, fd, rtol=0, atol=TOL_XTB_FORCE_FD)


def test_xtb_energies_along_a_path_match_single_points(xtb):
    """One calculator walks a bond scan; a failed point is None and the walk goes on."""
    path = []
    for r in (0.8, 1.0, 1.4, 2.0):
        x = WATER_DISTORTED.copy()
        axis = (x[1] - x[0]) / np.linalg.norm(x[1] - x[0])
        x[1] = x[0] + r * axis
        path.append(x)
    broken = np.full_like(WATER_DISTORTED, np.nan)
    energies = xtb.xtb_energies(WATER_NUMBERS, path[:2] + [broken] + path[2:])
    assert energies[2] is None and len(energies) == 5
    single = [xtb.xtb_energy_forces(WATER_NUMBERS, x)[0] for x in path]
    np.testing.assert_allclose([e for e in energies if e is not None], single, rtol=0, atol=1e-7)
    assert energies[0] > energies[1] < energies[3] < energies[4]  # a bond well: up on both sides
    assert xtb.xtb_energies(WATER_NUMBERS, []) == []


def test_xtb_energies_take_the_number_of_unpaired_electrons(xtb):
    """O2: the default for an even electron count is the singlet (uhf=0); uhf=2 computes the triplet, another state
    (GFN2-xTB's electronic temperature puts it 1.7 kcal/mol above, not below); an unpaired count that does not fit
    the electrons is one clear error."""
    from physff_openmm.errors import QMError

    o2 = [np.array([[0.0, 0.0, 0.0], [1.21, 0.0, 0.0]])]
    (default,), (singlet,), (triplet,) = (xtb.xtb_energies([8, 8], o2, uhf=u) for u in (None, 0, 2))
    assert default == singlet and abs(triplet - singlet) > 1e-3
    with pytest.raises(QMError, match="1 unpaired electrons do not fit 16 electrons"):
        xtb.xtb_energies([8, 8], o2, uhf=1)


def test_xtb_optimize(xtb, water_xtb_minimum):
    positions, energy = water_xtb_minimum
    e0, _ = xtb.xtb_energy_forces(WATER_NUMBERS, WATER_DISTORTED)
    assert energy < e0
    e1, forces = xtb.xtb_energy_forces(WATER_NUMBERS, positions)
    assert abs(e1 - energy) < 1e-8
    assert np.linalg.norm(forces, axis=1).max() < 2e-4
    assert 0.9 < np.linalg.norm(positions[1] - positions[0]) < 1.0  # O-H, Angstrom


@pytest.mark.parametrize("method", ["md", "normal_modes"])
def test_sample_off_equilibrium(xtb, water_xtb_minimum, method):
    minimum, _ = water_xtb_minimum
    samples = xtb.sample_off_equilibrium(WATER_NUMBERS, minimum, 0, 5, method=method, seed=7)
    again = xtb.sample_off_equilibrium(WATER_NUMBERS, minimum, 0, 5, method=method, seed=7)
    other = xtb.sample_off_equilibrium(WATER_NUMBERS, minimum, 0, 5, method=method, seed=8)
    assert samples.shape == (5, 3, 3)
    # deterministic up to round-off in tblite's threaded sums
    np.testing.assert_allclose(samples, again, rtol=0, atol=1e-9)
    assert np.abs(samples - other).max() > 1e-3
    assert np.abs(samples - minimum).max() > 1e-3  # actually displaced
    bonds = [(0, 1), (0, 2)]
    for i, j in bonds:
        r0 = np.linalg.norm(minimum[i] - minimum[j])
        r = np.linalg.norm(samples[:, i] - samples[:, j], axis=1)
        assert np.all(np.abs(r / r0 - 1.0) < 0.25)


def test_sample_off_equilibrium_bad_method(xtb):
    with pytest.raises(ConfigError, match="normal_modes"):
        xtb.sample_off_equilibrium(WATER_NUMBERS, WATER, method="metadynamics")


def test_xtb_unsupported_element(xtb):
    with pytest.raises(UnsupportedElementError):
        xtb.xtb_energy_forces([14, 1, 1, 1, 1], np.eye(5, 3))


# --------------------------------------------------------------------------------
# conformers
# --------------------------------------------------------------------------------


def test_generate_conformers_butane():
    from rdkit import Chem

    from physff_openmm.training.conformers import generate_conformers

    mol = Chem.AddHs(Chem.MolFromSmiles("CCCC"))
    out = generate_conformers(mol, 6, seed=1)
    assert 1 <= out.GetNumConformers() <= 6
    assert mol.GetNumConformers() == 0  # input untouched
    assert [a.GetAtomicNum() for a in out.GetAtoms()] == [a.GetAtomicNum() for a in mol.GetAtoms()]
    assert out.GetNumAtoms() == 14
    for conf in out.GetConformers():  # geometry follows the atom order: C-C bonds ~1.5 A
        pos = conf.GetPositions()
        for b in out.GetBonds():
            r = np.linalg.norm(pos[b.GetBeginAtomIdx()] - pos[b.GetEndAtomIdx()])
            assert 0.9 < r < 1.7
    again = generate_conformers(mol, 6, seed=1)
    np.testing.assert_array_equal(out.GetConformer(0).GetPositions(), again.GetConformer(0).GetPositions())


def test_generate_conformers_errors():
    from rdkit import Chem

    from physff_openmm.training.conformers import generate_conformers

    with pytest.raises(ConfigError, match="n_conformers"):
        generate_conformers(Chem.AddHs(Chem.MolFromSmiles("C")), 0)
    with pytest.raises(MissingHydrogenError):
        generate_conformers(Chem.MolFromSmiles("CCO"), 2)


def test_optimize_conformers_xtb(xtb):
    from rdkit import Chem

    from physff_openmm.training.conformers import generate_conformers, optimize_conformers_xtb

    mol = generate_conformers(Chem.AddHs(Chem.MolFromSmiles("CO")), 2, seed=3)
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    before = [xtb.xtb_energy_forces(numbers, c.GetPositions())[0] for c in mol.GetConformers()]
    out, energies = optimize_conformers_xtb(mol)
    assert energies.shape == (mol.GetNumConformers(),)
    assert np.all(energies <= np.array(before) + 1e-10)
    for conf, energy in zip(out.GetConformers(), energies):
        e, forces = xtb.xtb_energy_forces(numbers, conf.GetPositions())
        assert abs(e - energy) < 1e-6
        assert np.linalg.norm(forces, axis=1).max() < 2e-3
