"""Short MD runs with the shipped model: energy conservation in NVE, bonds kept."""

from __future__ import annotations

import numpy as np
import openmm
import pytest
from openmm import unit

import physff_openmm as pf
from physff_openmm.molecule import ensure_conformer, load_molecule, positions_angstrom
from physff_openmm.units import ANGSTROM_TO_NM

# Measured with the loop of the test below (ethanol, 0.25 fs, 2000 steps = 0.5 ps from 300 K after
# minimization, Reference platform): max |E(t) - E(0)| = 0.0245 kJ/mol with "physff-v2.1", for both backends
# (pytest -s prints it; the test runs the current default). The bound leaves room for other models without hiding a broken integrator or force.
NVE_MAX_DRIFT_KJ_MOL = 0.1
NVE_STEPS = 2000
TIMESTEP_FS = 0.25


def _minimized_context(system, pos, platform="Reference"):
    integrator = openmm.VerletIntegrator(TIMESTEP_FS * unit.femtoseconds)
    ctx = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform))
    ctx.setPositions(pos * ANGSTROM_TO_NM)
    openmm.LocalEnergyMinimizer.minimize(ctx, 1.0, 200)
    ctx.setVelocitiesToTemperature(300 * unit.kelvin, 2024)
    return ctx, integrator


@pytest.mark.parametrize("backend", ["native", "torch"])
def test_nve_conserves_energy_and_keeps_bonds(backend):
    mol = ensure_conformer(load_molecule("CCO"))
    params = pf.parameterize(mol, model="default")
    system = pf.create_system(params, backend=backend)
    ctx, integrator = _minimized_context(system, positions_angstrom(mol))
    energies = []
    for _ in range(NVE_STEPS // 50):
        integrator.step(50)
        st = ctx.getState(getEnergy=True)
        energies.append((st.getPotentialEnergy() + st.getKineticEnergy()).value_in_unit(unit.kilojoule_per_mole))
    e = np.asarray(energies)
    assert np.all(np.isfinite(e))
    drift = np.abs(e - e[0]).max()
    print(f"NVE drift ({backend}): {drift:.4f} kJ/mol")
    assert drift < NVE_MAX_DRIFT_KJ_MOL, f"NVE drift {drift:.4f} kJ/mol"
    pos = ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    start = positions_angstrom(mol)
    for i, j in params.covalent_pairs:
        r0 = np.linalg.norm(start[i] - start[j])
        r = np.linalg.norm(pos[i] - pos[j])
        assert abs(r - r0) / r0 < 0.25, f"bond {i}-{j} changed from {r0:.2f} to {r:.2f} A"
