"""OpenMM energies and forces of both backends against an independent NumPy evaluation."""

from __future__ import annotations

import numpy as np
import openmm
import pytest
import torch
from openmm import unit

import physff_openmm as pf
from physff_openmm import energy
from physff_openmm.molecule import ensure_conformer, load_molecule, positions_angstrom
from physff_openmm.system import LONG_RANGE_GROUP, SHORT_RANGE_GROUP
from physff_openmm.torchforce import ShortRangeModule
from physff_openmm.units import ANGSTROM_TO_NM, KJ_TO_KCAL

from reference_energy import reference_energy

# tolerances, with units
REL_ENERGY_TOL = 1e-6  # relative, OpenMM vs NumPy (the contract)
FD_FORCE_TOL = 1e-5  # kcal/mol/A absolute + the same relative, Reference platform (double)
CPU_FORCE_TOL = 1e-3  # relative to the largest force component, CPU platform (mixed precision)

MOLECULES = {
    "chlorobenzoic thioether (S, Cl, cation)": "OC(=O)c1ccc(Cl)cc1SC[NH3+]",
    "bromo phosphate ester (Br, P)": "COP(=O)(OC)Oc1ccc(Br)cc1",
    "acetate (anion)": "CC(=O)[O-]",
    "fluoro amide": "FC(F)(F)C(=O)NC",
    "acetate + water + methylammonium (complex)": "CC(=O)[O-].O.C[NH3+]",
}
PLATFORMS = ["Reference", "CPU"]
BACKENDS = [("native", "listed"), ("native", "classes"), ("torch", "listed"), ("torch", "classes")]


def perturbed(smiles: str, seed: int = 0, amplitude: float = 0.08):
    mol = ensure_conformer(load_molecule(smiles), seed=seed)
    rng = np.random.default_rng(seed)
    pos = positions_angstrom(mol) + rng.normal(0.0, amplitude, (mol.GetNumAtoms(), 3))
    return mol, pos


def openmm_state(system, pos_angstrom, platform="Reference", groups=None):
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    ctx.setPositions(pos_angstrom * ANGSTROM_TO_NM)
    kw = {} if groups is None else {"groups": groups}
    st = ctx.getState(getEnergy=True, getForces=True, **kw)
    e = st.getPotentialEnergy().value_in_unit(unit.kilocalorie_per_mole)
    f = st.getForces(asNumpy=True).value_in_unit(unit.kilocalorie_per_mole / unit.angstrom)
    return e, np.asarray(f)


@pytest.fixture(scope="module")
def cases(test_model_path):
    out = {}
    for name, smi in MOLECULES.items():
        mol, pos = perturbed(smi)
        out[name] = (pf.parameterize(mol, model=test_model_path), pos)
    return out


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("backend,layout", BACKENDS)
@pytest.mark.parametrize("name", list(MOLECULES))
def test_energy_matches_numpy_reference(cases, name, backend, layout, platform):
    params, pos = cases[name]
    ref = reference_energy(params, pos)
    system = pf.create_system(params, backend=backend, layout=layout)
    e, _ = openmm_state(system, pos, platform)
    total = e + params.energy_offset
    pair_part = ref["total"] - params.energy_offset
    # relative to the total and, stricter, to the pair energy alone
    assert total == pytest.approx(ref["total"], rel=REL_ENERGY_TOL)
    assert e == pytest.approx(pair_part, rel=REL_ENERGY_TOL, abs=1e-6 * max(1.0, abs(ref["coulomb"])))


@pytest.mark.parametrize("backend,layout", BACKENDS)
def test_force_groups_split_long_and_short_range(cases, backend, layout):
    params, pos = cases["bromo phosphate ester (Br, P)"]
    ref = reference_energy(params, pos)
    system = pf.create_system(params, backend=backend, layout=layout)
    e_lr, _ = openmm_state(system, pos, groups={LONG_RANGE_GROUP})
    e_sr, _ = openmm_state(system, pos, groups={SHORT_RANGE_GROUP})
    assert e_lr == pytest.approx(ref["coulomb"] + ref["c6_c12"], rel=REL_ENERGY_TOL)
    assert e_sr == pytest.approx(ref["short_range"], rel=REL_ENERGY_TOL, abs=1e-9)


def _fd_forces(params, pos, h=1e-5):
    f = np.zeros_like(pos)
    for a in range(len(pos)):
        for d in range(3):
            p = pos.copy()
            p[a, d] += h
            ep = reference_energy(params, p)["total"]
            p[a, d] -= 2 * h
            em = reference_energy(params, p)["total"]
            f[a, d] = -(ep - em) / (2 * h)
    return f


@pytest.mark.parametrize("backend,layout", BACKENDS)
def test_forces_match_central_finite_differences(cases, backend, layout):
    params, pos = cases["chlorobenzoic thioether (S, Cl, cation)"]
    fd = _fd_forces(params, pos)
    system = pf.create_system(params, backend=backend, layout=layout)
    _, f = openmm_state(system, pos, "Reference")
    np.testing.assert_allclose(f, fd, rtol=FD_FORCE_TOL, atol=FD_FORCE_TOL * max(1.0, np.abs(fd).max()))
    _, f_cpu = openmm_state(system, pos, "CPU")
    np.testing.assert_allclose(f_cpu, fd, atol=CPU_FORCE_TOL * np.abs(fd).max())


def test_torch_module_equals_energy_module(cases):
    """The TorchScript module and energy.pair_energy_terms are one formula."""
    params, pos = cases["fluoro amide"]
    n = params.n_atoms
    iu, ju = np.triu_indices(n, 1)
    c = torch.tensor(params.pair_parameters()[iu, ju])
    p = torch.tensor(pos)
    r = torch.linalg.vector_norm(p[iu] - p[ju], dim=1)
    q = torch.tensor(params.charges)
    cov = torch.tensor(params.covalent_matrix()[iu, ju])
    _, _, sr = energy.pair_energy_terms(r, q[iu], q[ju], c, cov, *params.switch)
    for layout in ("listed", "classes"):
        module = torch.jit.script(ShortRangeModule(params, layout=layout))
        e_kj = module(torch.tensor(pos * ANGSTROM_TO_NM))
        assert float(e_kj) * KJ_TO_KCAL == pytest.approx(float(sr.sum()), rel=1e-12, abs=1e-12)
        # and against the independent NumPy evaluation of the formula
        assert float(e_kj) * KJ_TO_KCAL == pytest.approx(reference_energy(params, pos)["short_range"], rel=1e-9)


def test_switch_is_smooth_at_its_ends():
    r_on, r_off = 5.0, 6.0
    r = torch.tensor([r_on - 1e-3, r_on, r_on + 1e-7, 5.5, r_off - 1e-7, r_off, r_off + 1e-3], dtype=torch.float64, requires_grad=True)
    s = energy.switch(r, r_on, r_off)
    (ds,) = torch.autograd.grad(s.sum(), r)
    s = s.detach()
    assert s[0] == 1.0 and s[1] == 1.0 and s[5] == 0.0 and s[6] == 0.0
    assert float(s[3]) == pytest.approx(0.5)
    assert abs(float(ds[2])) < 1e-9 and abs(float(ds[4])) < 1e-9  # zero slope at both ends


def _two_atoms_in_the_switch(backend_layout):
    """Two uncharged atoms in different fragments whose Gaussians are tens of kcal/mol across r_on..r_off."""
    from physff_openmm.parameters import ParameterSet

    c = np.zeros((1, 1, 14))
    c[0, 0, 0], c[0, 0, 1] = 1.0, 1.0  # tiny C6/C12
    c[0, 0, 12], c[0, 0, 13] = 100.0, 1.5  # Gaussian at 4.2 A, width 1.5 A: ~47 kcal/mol at 5.5 A
    c[0, 0, 10], c[0, 0, 11] = -40.0, 1.0  # and one of opposite sign at 3.6 A
    params = ParameterSet(
        symbols=["C", "C"], charges=np.zeros(2), covalent_pairs=np.zeros((0, 2), np.int64),
        intra_pairs=np.zeros((0, 2), np.int64), intra_parameters=np.zeros((0, 14)), atom_classes=np.zeros(2, np.int64),
        class_parameters=c, energy_offset=0.0, switch=(5.0, 6.0), fragments=[(0,), (1,)],
    )
    backend, layout = backend_layout
    return params, pf.create_system(params, backend=backend, layout=layout)


@pytest.mark.parametrize("backend,layout", BACKENDS)
def test_switch_through_openmm_is_the_quintic(backend, layout):
    """The switch as OpenMM evaluates it, with terms large enough that a hard cutoff or another switch fails."""
    params, system = _two_atoms_in_the_switch((backend, layout))
    r_on, r_off = params.switch
    for r in np.concatenate([np.linspace(r_on - 0.3, r_off + 0.3, 37), [r_on, r_off]]):
        pos = np.array([[0.0, 0.0, 0.0], [r, 0.0, 0.0]])
        e, f = openmm_state(system, pos)
        ref = reference_energy(params, pos)["total"]
        assert e == pytest.approx(ref, rel=1e-9, abs=1e-9), r
        # the force along the pair equals the reference's central difference (continuous derivative)
        h = 1e-6
        fd = -(reference_energy(params, pos + [[0, 0, 0], [h, 0, 0]])["total"]
               - reference_energy(params, pos - [[0, 0, 0], [h, 0, 0]])["total"]) / (2 * h)
        assert f[1, 0] == pytest.approx(fd, rel=1e-5, abs=1e-5), r
    # a wrong switch would show: in the middle the Gaussians are switched to exactly half
    mid = np.array([[0.0, 0.0, 0.0], [0.5 * (r_on + r_off), 0.0, 0.0]])
    e_mid, _ = openmm_state(system, mid)
    lj = -1.0 / 5.5**6 + 1.0 / 5.5**12
    gauss = 100.0 * np.exp(-(1.3**2) / (1.5**2 + 1e-5)) - 40.0 * np.exp(-(1.9**2) / (1.0 + 1e-5))
    assert e_mid == pytest.approx(lj + 0.5 * gauss, rel=1e-9)
    assert abs(0.5 * gauss) > 10.0


def test_nonbonded_cutoff_methods_agree(cases):
    """All nonbonded forces in a System use NoCutoff (OpenMM requires them to agree)."""
    params, _ = cases["acetate (anion)"]
    for backend, layout in BACKENDS:
        system = pf.create_system(params, backend=backend, layout=layout)
        for f in system.getForces():
            if isinstance(f, openmm.NonbondedForce):
                assert f.getNonbondedMethod() == openmm.NonbondedForce.NoCutoff
            if isinstance(f, openmm.CustomNonbondedForce):
                assert f.getNonbondedMethod() == openmm.CustomNonbondedForce.NoCutoff


def test_atom_order_and_masses(cases):
    params, _ = cases["bromo phosphate ester (Br, P)"]
    system = pf.create_system(params, backend="native")
    masses = [system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())]
    expected = [openmm.app.element.Element.getBySymbol(s).mass.value_in_unit(unit.dalton) for s in params.symbols]
    assert masses == expected


def test_torch_backend_works_when_openmm_is_imported_before_torch(test_model_path):
    """OpenMM loads openmm-torch's plugins at import; without libtorch loaded they fail and must be reloaded."""
    import subprocess
    import sys

    code = (
        "import openmm\n"
        "import physff_openmm as pf\n"
        "from physff_openmm.molecule import ensure_conformer, load_molecule, positions_angstrom\n"
        f"p = pf.parameterize('CCO', model={str(test_model_path)!r}, cache=False)\n"
        "s = pf.create_system(p, backend='torch')\n"
        "m = ensure_conformer(load_molecule('CCO'))\n"
        "c = openmm.Context(s, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName('Reference'))\n"
        "c.setPositions(positions_angstrom(m) * 0.1)\n"
        "print(c.getState(getEnergy=True).getPotentialEnergy()._value)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert np.isfinite(float(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("platform", PLATFORMS)
def test_native_neighbour_list_between_fragments(test_model_path, monkeypatch, platform):
    """Complexes: Gaussians between fragments through the cutoff neighbour list equal the formula."""
    from physff_openmm import system as system_module
    from physff_openmm.molecule import combine_molecules

    monkeypatch.setattr(system_module, "NATIVE_NEIGHBOR_LIST_MIN_PAIRS", 0)
    mols = [ensure_conformer(load_molecule(s), seed=k) for k, s in enumerate(["CC(=O)NC", "O", "c1ccc(Cl)cc1O", "C[NH3+]"])]
    # place the fragments 4.5 A apart on a line: many pairs inside r_on, in the switch and beyond r_off
    blocks = []
    for k, m in enumerate(mols):
        p = positions_angstrom(m)
        blocks.append(p - p.mean(0) + np.array([4.5 * k, 0.0, 0.0]))
    pos = np.vstack(blocks) + np.random.default_rng(5).normal(0.0, 0.05, (sum(len(b) for b in blocks), 3))
    topology = combine_molecules([load_molecule(s) for s in ["CC(=O)NC", "O", "c1ccc(Cl)cc1O", "C[NH3+]"]])
    params = pf.parameterize(topology, model=test_model_path)  # the coordinates are pos, set below
    system = pf.create_system(params, backend="native")
    assert any(isinstance(f, openmm.CustomManyParticleForce) for f in system.getForces())
    ref = reference_energy(params, pos)
    e, f = openmm_state(system, pos, platform)
    assert e + params.energy_offset == pytest.approx(ref["total"], rel=REL_ENERGY_TOL)
    e_sr, _ = openmm_state(system, pos, platform, groups={SHORT_RANGE_GROUP})
    assert e_sr == pytest.approx(ref["short_range"], rel=REL_ENERGY_TOL, abs=1e-6)
    if platform == "Reference":
        fd = _fd_forces(params, pos)
        np.testing.assert_allclose(f, fd, rtol=FD_FORCE_TOL, atol=FD_FORCE_TOL * max(1.0, np.abs(fd).max()))


def test_single_precision_torch_backend_agrees_with_double(cases):
    """precision="single" runs the TorchForce in float32: energies within float32 accuracy of float64."""
    params, pos = cases[list(MOLECULES)[-1]]
    e64, f64 = openmm_state(pf.create_system(params, backend="torch", precision="double"), pos)
    e32, f32 = openmm_state(pf.create_system(params, backend="torch", precision="single"), pos)
    assert e32 != e64  # really another precision
    assert e32 == pytest.approx(e64, rel=1e-5, abs=1e-3)
    np.testing.assert_allclose(f32, f64, rtol=1e-3, atol=1e-3 * np.abs(f64).max())
    with pytest.raises(pf.BackendError, match="unknown precision 'half'"):
        pf.create_system(params, backend="torch", precision="half")


def test_each_fragment_of_a_charged_complex_carries_its_formal_charge(test_model_path):
    """Charges sum per fragment, not only in total: an ion pair and a zwitterion beside water."""
    p = pf.parameterize("C[NH3+].CC(=O)[O-].[NH3+]CC(=O)[O-].O", model=test_model_path)
    sums = [p.charges[list(f)].sum() for f in p.fragments]
    np.testing.assert_allclose(sums, [1.0, -1.0, 0.0, 0.0], atol=1e-12)
    assert p.charges.sum() == pytest.approx(0.0, abs=1e-12)
    # the parameters of a fragment are those of the molecule alone
    alone = pf.parameterize("CC(=O)[O-]", model=test_model_path)
    np.testing.assert_allclose(p.charges[list(p.fragments[1])], alone.charges, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.parametrize("backend,layout", BACKENDS)
def test_cuda_platform_matches_the_numpy_reference(cases, backend, layout):
    """The CUDA platform (mixed precision, OpenMM's default) gives the formula's energy and forces."""
    if "CUDA" not in [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]:
        pytest.skip("no CUDA platform (install openmm-cuda-12 and openmm-torch-cuda-12 on a GPU machine)")
    for name, (params, pos) in cases.items():
        ref = reference_energy(params, pos)
        e, f = openmm_state(pf.create_system(params, backend=backend, layout=layout), pos, "CUDA")
        _, f_ref = openmm_state(pf.create_system(params, backend=backend, layout=layout), pos, "Reference")
        assert e + params.energy_offset == pytest.approx(ref["total"], rel=1e-5), name
        np.testing.assert_allclose(f, f_ref, rtol=1e-3, atol=1e-3 * np.abs(f_ref).max())
