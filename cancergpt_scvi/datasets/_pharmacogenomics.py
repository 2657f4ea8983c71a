"""Simulated pharmacogenomic screens: cell lines, drugs (real SMILES) and their responses.

Drug structures need RDKit (extra ``[drug]``), imported when a drug library is built, so the
other simulators of :mod:`cancergpt_scvi.datasets` work without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd

from cancergpt_scvi._extras import require

from ._malignant_atlas import (
    MALIGNANT_STATES,
    PRETRAINING_TISSUE_COMPOSITION,
    copy_number_profile,
    make_genetic_background,
    sample_counts,
)

#: SMILES of anticancer drugs screened in GDSC / CCLE / PRISM (kinase inhibitors,
#: chemotherapies, PARP, HDAC, proteasome and MDM2 inhibitors, a platinum complex).
EXAMPLE_DRUG_SMILES: dict[str, str] = {
    "Erlotinib": "COCCOc1cc2ncnc(Nc3cccc(c3)C#C)c2cc1OCCOC",
    "Gefitinib": "COc1cc2ncnc(Nc3ccc(F)c(Cl)c3)c2cc1OCCCN1CCOCC1",
    "Lapatinib": "CS(=O)(=O)CCNCc1ccc(o1)-c1ccc2ncnc(Nc3ccc(OCc4cccc(F)c4)c(Cl)c3)c2c1",
    "Afatinib": "CN(C)C/C=C/C(=O)Nc1cc2c(Nc3ccc(F)c(Cl)c3)ncnc2cc1O[C@H]1CCOC1",
    "Osimertinib": "COc1cc(N(C)CCN(C)C)c(NC(=O)C=C)cc1Nc1nccc(n1)-c1cn(C)c2ccccc12",
    "Imatinib": "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(n1)-c1cccnc1",
    "Nilotinib": "Cc1cn(cn1)-c1cc(NC(=O)c2ccc(C)c(Nc3nccc(n3)-c3cccnc3)c2)cc(c1)C(F)(F)F",
    "Dasatinib": "Cc1nc(Nc2ncc(s2)C(=O)Nc2c(C)cccc2Cl)cc(n1)N1CCN(CCO)CC1",
    "Bosutinib": "COc1cc(Nc2c(cnc3cc(OCCCN4CCN(C)CC4)c(OC)cc23)C#N)c(Cl)cc1Cl",
    "Sorafenib": "CNC(=O)c1cc(Oc2ccc(NC(=O)Nc3ccc(Cl)c(c3)C(F)(F)F)cc2)ccn1",
    "Sunitinib": "CCN(CC)CCNC(=O)c1c(C)[nH]c(/C=C2\\C(=O)Nc3ccc(F)cc23)c1C",
    "Pazopanib": "Cc1ccc(Nc2nccc(n2)N(C)c2ccc3c(C)n(C)nc3c2)cc1S(N)(=O)=O",
    "Axitinib": "CNC(=O)c1ccccc1Sc1ccc2c(/C=C/c3ccccn3)n[nH]c2c1",
    "Vemurafenib": "CCCS(=O)(=O)Nc1ccc(F)c(C(=O)c2c[nH]c3ncc(cc23)-c2ccc(Cl)cc2)c1F",
    "Dabrafenib": "CC(C)(C)c1nc(c(s1)-c1ccnc(N)n1)-c1cccc(NS(=O)(=O)c2c(F)cccc2F)c1F",
    "Trametinib": (
        "CC1=C2C(=C(N(C1=O)C)NC3=C(C=C(C=C3)I)F)C(=O)N(C(=O)N2C4=CC=CC(=C4)NC(=O)C)C5CC5"
    ),
    "Selumetinib": "Cn1cnc2c(F)c(Nc3ccc(Br)cc3Cl)c(cc21)C(=O)NOCCO",
    "Crizotinib": "C[C@@H](Oc1cc(cnc1N)-c1cnn(c1)C1CCNCC1)c1c(Cl)ccc(F)c1Cl",
    "Ruxolitinib": "N#CC[C@H](C1CCCC1)n1cc(cn1)-c1ncnc2[nH]ccc12",
    "Ibrutinib": "Nc1ncnc2n(nc(-c3ccc(Oc4ccccc4)cc3)c12)[C@@H]1CCCN(C1)C(=O)C=C",
    "Palbociclib": "CC(=O)c1c(C)c2cnc(Nc3ccc(cn3)N3CCNCC3)nc2n(C2CCCC2)c1=O",
    "Alpelisib": "Cc1nc(sc1-c1ccnc(c1)C(C)(C)C(F)(F)F)NC(=O)N1CCC[C@H]1C(N)=O",
    "Olaparib": "O=C(c1cc(Cc2n[nH]c(=O)c3ccccc23)ccc1F)N1CCN(CC1)C(=O)C1CC1",
    "Vorinostat": "ONC(=O)CCCCCCC(=O)Nc1ccccc1",
    "Bortezomib": "CC(C)C[C@H](NC(=O)[C@H](Cc1ccccc1)NC(=O)c1cnccn1)B(O)O",
    "Tamoxifen": "CC/C(=C(\\c1ccccc1)c1ccc(OCCN(C)C)cc1)c1ccccc1",
    "Cisplatin": "N.N.Cl[Pt]Cl",
    "Fluorouracil": "O=c1[nH]cc(F)c(=O)[nH]1",
    "Gemcitabine": "Nc1ccn([C@@H]2O[C@H](CO)[C@@H](O)C2(F)F)c(=O)n1",
    "Cytarabine": "Nc1ccn([C@@H]2O[C@H](CO)[C@@H](O)[C@@H]2O)c(=O)n1",
    "Methotrexate": "CN(Cc1cnc2nc(N)nc(N)c2n1)c1ccc(cc1)C(=O)N[C@@H](CCC(O)=O)C(O)=O",
    "Doxorubicin": (
        "COc1cccc2C(=O)c3c(O)c4C[C@](O)(C[C@H](O[C@H]5C[C@H](N)[C@H](O)[C@H](C)O5)"
        "c4c(O)c3C(=O)c12)C(=O)CO"
    ),
    "Camptothecin": "CC[C@@]1(O)C(=O)OCc2c1cc1-c3nc4ccccc4cc3Cn1c2=O",
    "Temozolomide": "Cn1nnc2c(ncn2c1=O)C(N)=O",
    "Cyclophosphamide": "ClCCN(CCCl)P1(=O)NCCCO1",
    "Nutlin-3a": (
        "COc1ccc(C2=N[C@@H](c3ccc(Cl)cc3)[C@@H](c3ccc(Cl)cc3)N2C(=O)N2CCNC(=O)C2)c(OC(C)C)c1"
    ),
}

if TYPE_CHECKING:
    from rdkit import Chem

#: Names of the RDKit descriptors through which a drug's structure shapes its response.
_DESCRIPTORS = (
    "MolLogP",
    "TPSA",
    "NumHDonors",
    "NumHAcceptors",
    "NumRotatableBonds",
    "NumAromaticRings",
    "FractionCSP3",
    "MolWt",
)
_SUBSTITUENTS = ("C", "F", "Cl", "O", "N")


def _analogue(mol: Chem.Mol, rng: np.random.Generator, n_substituents: int) -> str | None:
    """SMILES of ``mol`` with small substituents put on carbons that carry hydrogens."""
    from rdkit import Chem, rdBase  # present: the callers required it

    sites = [
        a.GetIdx()
        for a in mol.GetAtoms()
        if a.GetSymbol() == "C" and a.GetNumImplicitHs() > 0 and not a.GetNoImplicit()
    ]
    if len(sites) < n_substituents:
        return None
    rw = Chem.RWMol(mol)
    for site in rng.choice(sites, size=n_substituents, replace=False):
        new = rw.AddAtom(Chem.Atom(str(rng.choice(_SUBSTITUENTS))))
        rw.AddBond(int(site), new, Chem.BondType.SINGLE)
    with rdBase.BlockLogs():
        try:
            Chem.SanitizeMol(rw)
        except Exception:  # an impossible analogue is simply not used
            return None
    return Chem.MolToSmiles(rw)


def _drug_library(n_drugs: int, seed: int = 0) -> dict[str, str]:
    """Drug name to SMILES: the real drugs of :data:`EXAMPLE_DRUG_SMILES`, then analogues.

    Beyond the real drugs, analogues (``"<drug>-a<k>"``) carry one or two extra methyl,
    halogen, hydroxyl or amino groups, so large screens (hundreds of drugs) keep realistic,
    valid structures with families of related compounds. Needs RDKit (the caller requires it).

    Parameters
    ----------
    n_drugs
        Number of drugs.
    seed
        Seed of the analogues.

    Returns
    -------
    Drug name to SMILES, ``n_drugs`` entries.
    """
    if n_drugs < 1:
        raise ValueError(f"n_drugs must be positive, got {n_drugs}.")
    from rdkit import Chem  # present: the caller required it

    library = dict(list(EXAMPLE_DRUG_SMILES.items())[:n_drugs])
    rng = np.random.default_rng(seed)
    bases = [(name, Chem.MolFromSmiles(s)) for name, s in EXAMPLE_DRUG_SMILES.items()]
    seen = {Chem.MolToSmiles(mol) for _, mol in bases}
    counter: dict[str, int] = {}
    attempts = 0
    while len(library) < n_drugs:
        attempts += 1
        if attempts > 100 * n_drugs:
            raise RuntimeError("Could not generate enough distinct analogues.")
        name, mol = bases[int(rng.integers(len(bases)))]
        smiles = _analogue(mol, rng, n_substituents=int(rng.integers(1, 3)))
        if smiles is None or smiles in seen:
            continue
        seen.add(smiles)
        counter[name] = counter.get(name, 0) + 1
        library[f"{name}-a{counter[name]}"] = smiles
    return library


@dataclass
class SimulatedDrugResponse:
    """A simulated pharmacogenomic screen and the function that generated it.

    The expected response of cell line ``c`` to drug ``d`` is

    .. math:: \\mu_{cd} = \\text{potency}_d + \\sum_k \\text{sensitivity}_{dk}\\,a_{ck}
              + \\text{tissue\\_effect}_{d,\\,\\text{tissue}(c)}

    where :math:`a_{ck}` is the standardised share of malignant-state program ``k`` in cell
    line ``c`` (``program_activity``); observed responses add Gaussian noise. Potency and
    sensitivities depend partly on the drug's structure (RDKit descriptors), partly not; part of
    the sensitivity is shared by all drugs (cell lines that respond to many drugs, as in real
    screens).

    Attributes
    ----------
    adata
        Cell lines x genes: ``X`` log1p counts per million, ``layers["counts"]`` bulk counts,
        ``obs["tissue"]``; ``obs_names`` are the cell-line names.
    responses
        Long table with columns ``cell_line``, ``drug``, ``response`` (ln IC50-like).
    smiles
        Drug name to SMILES.
    potency, sensitivity, tissue_effect, program_activity
        The parameters of the generating function (drugs; drugs x states; drugs x tissues;
        cell lines x states).
    noise_sd
        Standard deviation of the observation noise.
    """

    adata: ad.AnnData
    responses: pd.DataFrame
    smiles: dict[str, str]
    potency: pd.Series
    sensitivity: pd.DataFrame
    tissue_effect: pd.DataFrame
    program_activity: pd.DataFrame
    noise_sd: float

    def expected_response(
        self, pairs: pd.DataFrame, cell_line_key: str = "cell_line", drug_key: str = "drug"
    ) -> np.ndarray:
        """Noise-free response of each (cell line, drug) row of ``pairs``: the oracle.

        Parameters
        ----------
        pairs
            Table with a cell-line and a drug column.
        cell_line_key, drug_key
            Names of those columns.

        Returns
        -------
        Expected response of each row, in order.
        """
        cells = pairs[cell_line_key].to_numpy()
        drugs = pairs[drug_key].to_numpy()
        tissue = self.adata.obs["tissue"].astype(str).reindex(cells).to_numpy()
        activity = self.program_activity.loc[cells].to_numpy()
        sensitivity = self.sensitivity.loc[drugs].to_numpy()
        te = self.tissue_effect.to_numpy()[
            self.tissue_effect.index.get_indexer(drugs),
            self.tissue_effect.columns.get_indexer(tissue),
        ]
        return self.potency.loc[drugs].to_numpy() + (activity * sensitivity).sum(1) + te


def _standardise(x: np.ndarray) -> np.ndarray:
    """Columns of ``x`` centred and scaled to unit variance (constant columns centred only)."""
    sd = x.std(0)
    return (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)


def simulate_drug_response(
    n_cell_lines: int = 200,
    n_drugs: int = 24,
    n_genes: int = 2000,
    tissues: Mapping[str, float] | Sequence[str] | None = None,
    states: Sequence[str] = MALIGNANT_STATES,
    missing_fraction: float = 0.1,
    potency_sd: float = 1.5,
    sensitivity_sd: float = 0.45,
    shared_sensitivity_sd: float = 0.2,
    tissue_effect_sd: float = 0.3,
    noise_sd: float = 0.6,
    state_concentration: float = 0.7,
    depth: float = 2e6,
    seed: int = 0,
    biology_seed: int = 0,
) -> SimulatedDrugResponse:
    """Simulate a pharmacogenomic screen (GDSC-like) with known cell-specific signal.

    Cell lines are bulk expression profiles from the same gene programs as
    :func:`~cancergpt_scvi.datasets.simulate_malignant_atlas` (same ``n_genes`` and
    ``biology_seed`` give the same genes and programs, so a model pretrained on a simulated
    atlas can embed these cell lines): a tissue program, a mixture of malignant-state
    programs, a copy-number profile and a cell-line offset, sampled as deep bulk counts.
    Drugs are real SMILES (:data:`EXAMPLE_DRUG_SMILES`, then analogues). Responses follow
    :class:`SimulatedDrugResponse`: most of their variance is drug potency, as in real screens,
    and the rest is drug-specific sensitivity to the state programs, a drug-by-tissue effect and
    noise.

    Parameters
    ----------
    n_cell_lines
        Number of cell lines.
    n_drugs
        Number of drugs (beyond 36, analogues of the real drugs).
    n_genes
        Number of genes.
    tissues
        Tissue proportions, or names (equal proportions). Default: the 14 tissues of
        :data:`PRETRAINING_TISSUE_COMPOSITION`, equally.
    states
        Malignant-state programs the cell lines mix and drugs respond to.
    missing_fraction
        Share of (cell line, drug) pairs left unmeasured, at random.
    potency_sd, sensitivity_sd, shared_sensitivity_sd, tissue_effect_sd, noise_sd
        Scales of drug potency, of each drug's own sensitivity to each program, of the
        sensitivity to each program shared by all drugs, of the drug-by-tissue effect and of
        the observation noise.
    state_concentration
        Dirichlet concentration of each cell line's state mixture (smaller: purer states).
    depth
        Mean sequencing depth of a cell line's profile.
    seed
        Seed of the sampling (cell lines, drug parameters, noise).
    biology_seed
        Seed of the gene programs (see :func:`~cancergpt_scvi.datasets.simulate_malignant_atlas`).

    Returns
    -------
    The screen and its generating function.

    Raises
    ------
    ImportError
        RDKit is not installed (extra ``[drug]``).
    """
    descriptors = require("rdkit.Chem.Descriptors", extra="drug", feature="simulate_drug_response")
    from rdkit import Chem  # installed with its Descriptors

    if n_cell_lines < 2:
        raise ValueError(f"n_cell_lines must be at least 2, got {n_cell_lines}.")
    if not 0.0 <= missing_fraction < 1.0:
        raise ValueError(f"missing_fraction must be in [0, 1), got {missing_fraction}.")
    rng = np.random.default_rng(seed)
    if tissues is None:
        tissues = list(PRETRAINING_TISSUE_COMPOSITION)
    if not isinstance(tissues, Mapping):
        tissues = dict.fromkeys(tissues, 1.0)
    tissue_names = list(tissues)
    tissue_p = np.asarray([tissues[t] for t in tissue_names], dtype=float)
    states = list(states)
    bg = make_genetic_background(n_genes, tissue_names, states, (), biology_seed)

    # --- cell lines: bulk profiles of a tissue and a mixture of malignant states
    cell_tissue = rng.choice(len(tissue_names), size=n_cell_lines, p=tissue_p / tissue_p.sum())
    share = rng.dirichlet(np.full(len(states), state_concentration), size=n_cell_lines)
    state_effect = np.stack([bg.state_programs[s] for s in states])
    log_mean = np.stack(
        [
            bg.base_log_mean
            + bg.tissue_programs[tissue_names[cell_tissue[i]]]
            + copy_number_profile(n_genes, rng, n_segments=int(rng.integers(3, 8)))
            + rng.normal(0.0, 0.25, size=n_genes)
            # a bulk profile sums its cells: the log of the state mixture of expression
            + np.log(share[i] @ np.exp(state_effect))
            for i in range(n_cell_lines)
        ]
    )
    cell_depth = depth * np.exp(rng.normal(0.0, 0.3, size=n_cell_lines))
    counts = sample_counts(log_mean, cell_depth, theta=30.0, rng=rng)
    totals = np.asarray(counts.sum(1)).ravel()
    cpm = counts.multiply(1e6 / totals[:, None]).toarray()
    cell_names = [f"CL{i:04d}" for i in range(n_cell_lines)]
    obs = pd.DataFrame(
        {"tissue": pd.Categorical(np.asarray(tissue_names)[cell_tissue], categories=tissue_names)},
        index=cell_names,
    )
    adata = ad.AnnData(
        X=np.log1p(cpm).astype(np.float32),
        obs=obs,
        var=pd.DataFrame({"chromosome": bg.chromosome}, index=bg.gene_names),
        layers={"counts": counts},
    )

    # --- drugs: potency and sensitivities, partly from structure
    smiles = _drug_library(n_drugs, seed=seed)
    drug_names = list(smiles)
    # the library's structures are valid: RDKit wrote or checked each one
    mols = [Chem.MolFromSmiles(s) for s in smiles.values()]
    functions = [getattr(descriptors, name) for name in _DESCRIPTORS]
    structure = _standardise(np.asarray([[f(m) for f in functions] for m in mols]))

    def structured(n_out: int) -> np.ndarray:
        from_structure = structure @ rng.normal(size=(structure.shape[1], n_out))
        own = rng.normal(size=(len(drug_names), n_out))
        if len(drug_names) > 1:
            from_structure = _standardise(from_structure)
        return np.sqrt(0.5) * from_structure + np.sqrt(0.5) * own

    potency = 2.0 + potency_sd * structured(1)[:, 0]
    shared = rng.normal(0.0, shared_sensitivity_sd, size=len(states))
    sensitivity = shared + sensitivity_sd * structured(len(states))
    tissue_effect = tissue_effect_sd * rng.normal(size=(len(drug_names), len(tissue_names)))

    # state shares standardised by their Dirichlet marginal (a Beta), not by this sample
    k = len(states)
    share_sd = np.sqrt((1 / k) * (1 - 1 / k) / (k * state_concentration + 1))
    activity = (share - 1 / k) / share_sd

    sim = SimulatedDrugResponse(
        adata=adata,
        responses=pd.DataFrame(),
        smiles=smiles,
        potency=pd.Series(potency, index=drug_names, name="potency"),
        sensitivity=pd.DataFrame(sensitivity, index=drug_names, columns=states),
        tissue_effect=pd.DataFrame(tissue_effect, index=drug_names, columns=tissue_names),
        program_activity=pd.DataFrame(activity, index=cell_names, columns=states),
        noise_sd=noise_sd,
    )
    cell_idx, drug_idx = np.meshgrid(np.arange(n_cell_lines), np.arange(len(drug_names)))
    pairs = pd.DataFrame(
        {
            "cell_line": np.asarray(cell_names)[cell_idx.T.ravel()],
            "drug": np.asarray(drug_names)[drug_idx.T.ravel()],
        }
    )
    pairs = pairs[rng.random(len(pairs)) >= missing_fraction].reset_index(drop=True)
    mean = sim.expected_response(pairs)
    pairs["response"] = mean + rng.normal(0.0, noise_sd, size=len(pairs))
    sim.responses = pairs
    return sim
