"""A physff ligand in a box of TIP3P water with plain OpenMM: the template generator at work.

Paracetamol (by default) is parameterized by the graph model and joins Amber's TIP3P
water and ions through ``openmm.app.ForceField`` + ``PhysFFTemplateGenerator``, exactly as
openmmforcefields' GAFF or espaloma generators are used: Modeller solvates, ForceField
builds the System (PME with a 0.9 nm cutoff, bonds to hydrogen constrained), a MonteCarloBarostat keeps 1 bar,
and OpenMM's own Simulation and reporters run NPT dynamics at 300 K with 2 fs steps.

    python examples/ligand_in_water.py --model default --out ligand_in_water_out --steps 5000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit

from physff_openmm import PhysFFTemplateGenerator
from physff_openmm.molecule import ensure_conformer, load_molecule, positions_angstrom
from physff_openmm.workflows import read_report_csv, topology_from_mol

PARACETAMOL = "CC(=O)Nc1ccc(O)cc1"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="model name or file (default: %(default)s)")
    parser.add_argument("--out", default="ligand_in_water_out", help="output folder")
    parser.add_argument("--smiles", default=PARACETAMOL, help="ligand (default: paracetamol)")
    parser.add_argument("--steps", type=int, default=5000, help="MD steps of 2 fs (default: %(default)s, 10 ps)")
    parser.add_argument("--padding", type=float, default=1.2, help="box edge = ligand diameter + this, nm (at least 2 x 0.9 nm cutoff in all; default: %(default)s)")
    parser.add_argument("--platform", default=None, help="OpenMM platform (default: the fastest)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    ligand = ensure_conformer(load_molecule(args.smiles))
    generator = PhysFFTemplateGenerator(molecules=[ligand], model=args.model)
    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    forcefield.registerTemplateGenerator(generator.generator)

    modeller = app.Modeller(topology_from_mol(ligand), positions_angstrom(ligand) * 0.1 * unit.nanometer)
    modeller.addSolvent(forcefield, model="tip3p", padding=args.padding * unit.nanometer,
                        ionicStrength=0.15 * unit.molar)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer,
                                     constraints=app.HBonds)
    system.addForce(openmm.MonteCarloBarostat(1.0 * unit.bar, 300 * unit.kelvin))
    n_waters = sum(1 for r in modeller.topology.residues() if r.name == "HOH")
    print(f"{args.smiles} in {n_waters} TIP3P waters: {system.getNumParticles()} atoms, "
          f"{system.getNumConstraints()} constraints; forces: "
          + ", ".join(sorted({type(f).__name__ for f in system.getForces()})))

    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1.0 / unit.picosecond, 2.0 * unit.femtoseconds)
    integrator.setRandomNumberSeed(2024)
    platform = [] if args.platform is None else [openmm.Platform.getPlatformByName(args.platform)]
    simulation = app.Simulation(modeller.topology, system, integrator, *platform)
    simulation.context.setPositions(modeller.positions)
    simulation.minimizeEnergy(maxIterations=500)
    simulation.context.setVelocitiesToTemperature(300 * unit.kelvin, 2024)
    with open(out / "start.pdb", "w") as fh:
        state = simulation.context.getState(getPositions=True, enforcePeriodicBox=True)
        app.PDBFile.writeFile(simulation.topology, state.getPositions(), fh)
    interval = max(1, args.steps // 20)
    simulation.reporters.append(app.DCDReporter(str(out / "md.dcd"), interval))
    simulation.reporters.append(app.StateDataReporter(str(out / "md.csv"), interval, step=True, time=True,
                                                      potentialEnergy=True, temperature=True, density=True))
    simulation.step(args.steps)
    simulation.reporters.clear()

    report = read_report_csv(out / "md.csv")
    half = len(report["Step"]) // 2
    offset = generator.energy_offset(modeller.topology)
    print(f"{args.steps} steps (t = {args.steps * 2e-3:.2f} ps): mean density (second half) "
          f"{np.mean(report['Density (g/mL)'][half:]):.3f} g/mL, mean temperature {np.mean(report['Temperature (K)'][half:]):.0f} K; "
          f"the ligand's E_lin ({offset:.1f} kcal/mol) is a constant outside the System")
    print(f"wrote {out / 'start.pdb'}, {out / 'md.dcd'} and {out / 'md.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
