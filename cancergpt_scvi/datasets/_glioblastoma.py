"""Simulated glioblastoma: the zero-shot integration benchmark's evaluation scenario."""

from __future__ import annotations

from collections.abc import Mapping

import anndata as ad
import numpy as np

from ._malignant_atlas import (
    TECHNOLOGIES,
    assemble_cells,
    make_genetic_background,
    simulate_tumour,
)

#: Glioblastoma malignant states (Neftel et al., 2019) and the gene program each one draws.
#: MES-like reuses the atlas' ``"mesenchymal"`` program; the others are programs the
#: pretraining atlas never contains.
GLIOBLASTOMA_STATES: dict[str, str] = {
    "MES-like": "mesenchymal",
    "AC-like": "AC-like",
    "OPC-like": "OPC-like",
    "NPC-like": "NPC-like",
}

# Hallmark glioblastoma copy-number changes (log fold change of whole chromosomes):
# chromosome 7 gain and chromosome 10 loss.
_GBM_HALLMARK_CNV: dict[int, float] = {7: np.log(1.5), 10: np.log(0.5)}


def simulate_glioblastoma(
    n_cells: int = 2000,
    n_patients: int = 12,
    n_genes: int = 2000,
    technologies: Mapping[str, float] | None = None,
    state_concentration: float = 1.0,
    hallmark_cnv_rate: float = 0.7,
    seed: int = 0,
    biology_seed: int = 0,
    patient_prefix: str = "GBM",
) -> ad.AnnData:
    """Simulate malignant glioblastoma cells of many patients profiled by two technologies.

    The structure follows the data set the CancerGPT paper evaluates integration on
    (Neftel et al., 2019): every tumour contains the four malignant states MES-, AC-, OPC- and
    NPC-like in its own proportions, some tumours were profiled with a full-length plate
    protocol (``"Smart-seq2"``) and the others with droplets (``"10x 3'"``), and each tumour
    carries its own copy-number blocks (plus, in most tumours, the hallmark chromosome 7
    gain and chromosome 10 loss). Genes, baseline expression, the ``"Brain"`` tissue program,
    the ``"mesenchymal"`` program (MES-like) and the technology biases are those of
    :func:`~cancergpt_scvi.datasets.simulate_malignant_atlas` with the same ``n_genes`` and
    ``biology_seed``, so a model pretrained on such an atlas embeds these cells zero-shot.

    Parameters
    ----------
    n_cells
        Approximate number of cells, split unevenly among patients (each gets at least 10).
    n_patients
        Number of tumours; each tumour is one ``batch``. At least 2.
    n_genes
        Number of genes; must equal the pretraining atlas' ``n_genes``.
    technologies
        Share of patients profiled by each technology (rounded, each technology gets at least
        one patient). Default: half ``"Smart-seq2"``, half ``"10x 3'"``.
    state_concentration
        Dirichlet concentration of the per-patient state proportions; small values give
        tumours dominated by one or two states.
    hallmark_cnv_rate
        Probability that a tumour carries the chromosome 7 gain / chromosome 10 loss.
    seed
        Seed of the sampling (patients, cells, counts).
    biology_seed
        Seed of the gene programs; keep it equal to the pretraining atlas' ``biology_seed``.
    patient_prefix
        Prefix of patient names; keep it different from the pretraining atlas' prefix so
        that evaluation patients are distinct from pretraining patients.

    Returns
    -------
    AnnData with raw counts in ``X`` (CSR, float32), ``obs`` columns ``tissue`` (``"Brain"``),
    ``technology``, ``patient``, ``batch`` (equal to ``patient``) and ``cell_state`` (one of
    :data:`GLIOBLASTOMA_STATES`), all categorical; ``var`` has ``chromosome``.
    """
    if n_patients < 2:
        raise ValueError(f"n_patients must be at least 2 to have batches, got {n_patients}.")
    if n_cells < 10 * n_patients:
        raise ValueError(
            f"n_cells={n_cells} is too small for {n_patients} patients; use at least "
            f"{10 * n_patients}."
        )
    if technologies is None:
        technologies = {"Smart-seq2": 0.5, "10x 3'": 0.5}
    tech_names = list(technologies)
    if len(tech_names) > n_patients:
        raise ValueError(
            f"{len(tech_names)} technologies need at least as many patients; got {n_patients}."
        )
    unknown = [t for t in tech_names if t not in TECHNOLOGIES]
    if unknown:
        raise ValueError(f"Unknown technologies {unknown}; choose from {list(TECHNOLOGIES)}.")
    rng = np.random.default_rng(seed)

    state_names = list(GLIOBLASTOMA_STATES)
    bg = make_genetic_background(
        n_genes,
        tissues=("Brain",),
        states=tuple(GLIOBLASTOMA_STATES.values()),
        technologies=tech_names,
        biology_seed=biology_seed,
    )
    state_matrix = np.stack([bg.state_programs[p] for p in GLIOBLASTOMA_STATES.values()])

    # Patients per technology: rounded shares, at least one each, summing to n_patients.
    share = np.asarray([technologies[t] for t in tech_names], dtype=float)
    share /= share.sum()
    n_per_tech = np.maximum(np.round(share * n_patients).astype(int), 1)
    while n_per_tech.sum() > n_patients:
        n_per_tech[np.argmax(n_per_tech)] -= 1
    while n_per_tech.sum() < n_patients:
        n_per_tech[np.argmin(n_per_tech)] += 1
    patient_tech = rng.permutation(np.repeat(np.arange(len(tech_names)), n_per_tech))

    split = rng.dirichlet(np.full(n_patients, 4.0))
    n_per_patient = np.maximum(np.round(split * n_cells).astype(int), 10)

    # Whole-chromosome hallmark blocks along the genome order.
    hallmark = np.zeros(n_genes)
    for chrom, shift in _GBM_HALLMARK_CNV.items():
        hallmark[bg.chromosome == chrom] = shift

    blocks, obs_rows = [], []
    for p_idx in range(n_patients):
        state_p = rng.dirichlet(np.full(len(state_names), state_concentration))
        counts, obs = simulate_tumour(
            bg,
            rng,
            patient=f"{patient_prefix}{p_idx:02d}",
            n_cells=int(n_per_patient[p_idx]),
            tissue="Brain",
            technology=tech_names[patient_tech[p_idx]],
            state_names=state_names,
            state_programs=state_matrix,
            state_p=state_p,
            hallmark_cnv=hallmark,
            hallmark_cnv_rate=hallmark_cnv_rate,
        )
        blocks.append(counts)
        obs_rows.append(obs)
    adata = assemble_cells(blocks, obs_rows, bg, cell_prefix=f"{patient_prefix}-")
    adata.obs["cell_state"] = adata.obs["cell_state"].cat.set_categories(state_names)
    return adata
