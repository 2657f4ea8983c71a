"""Simulated malignant single-cell atlases: the package's built-in example data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

#: Malignant cells per tissue in the published CancerGPT pretraining corpus (994,325 cells).
PRETRAINING_TISSUE_COMPOSITION: dict[str, int] = {
    "Breast": 202728,
    "Hematologic": 139135,
    "Skin": 119398,
    "Brain": 110587,
    "Lung": 101179,
    "Ovarian": 86921,
    "Neuroendocrine": 72775,
    "Pancreas": 34907,
    "Sarcoma": 33459,
    "Kidney": 31998,
    "Prostate": 28162,
    "Head-and-Neck": 17508,
    "Colorectal": 11267,
    "Liverbiliary": 4301,
}

#: Malignant states shared across tissues (programs of co-expressed genes).
MALIGNANT_STATES: tuple[str, ...] = (
    "cycling",
    "mesenchymal",
    "hypoxia",
    "stress",
    "interferon",
    "epithelial",
)

#: Technologies: droplet 3' UMI counts and full-length plate read counts.
TECHNOLOGIES: dict[str, dict[str, float]] = {
    # log-mean depth, depth spread, NB dispersion (theta), strength of gene-specific bias
    "10x 3'": {"log_depth": np.log(4000.0), "depth_sd": 0.35, "theta": 8.0, "bias_sd": 0.5},
    "Smart-seq2": {"log_depth": np.log(60000.0), "depth_sd": 0.5, "theta": 1.5, "bias_sd": 0.7},
}


@dataclass(frozen=True)
class GeneticBackground:
    """Fixed biology shared by every data set simulated with the same ``biology_seed``.

    Keeping gene programs fixed lets a model pretrained on one simulated atlas be evaluated
    zero-shot on another (new patients, new technologies) that lives in the same gene space.
    """

    gene_names: np.ndarray
    chromosome: np.ndarray
    base_log_mean: np.ndarray
    gene_length_z: np.ndarray
    tissue_programs: dict[str, np.ndarray]
    state_programs: dict[str, np.ndarray]
    technology_bias: dict[str, np.ndarray]


def make_genetic_background(
    n_genes: int = 2000,
    tissues: Sequence[str] = tuple(PRETRAINING_TISSUE_COMPOSITION),
    states: Sequence[str] = MALIGNANT_STATES,
    technologies: Sequence[str] = tuple(TECHNOLOGIES),
    biology_seed: int = 0,
    program_size: int = 40,
    state_program_size: int | None = None,
    state_effect: float = 1.6,
) -> GeneticBackground:
    """Draw gene names, genome order, baseline expression and the gene programs.

    Parameters
    ----------
    n_genes
        Number of genes, laid out in genome order over 22 chromosomes.
    tissues, states, technologies
        Names of the tissue programs, malignant-state programs and technology biases to draw.
        A program's genes depend only on ``biology_seed`` and the program's name, so two calls
        with overlapping names share those programs.
    biology_seed
        Seed of everything in the background.
    program_size
        Genes per tissue or state program.
    state_program_size
        Genes per state program, if not ``program_size``.
    state_effect
        Mean log-fold effect of a state program on its genes (tissue programs: 2.0). Small
        values on many genes give subtle states.
    """
    if n_genes < 4 * program_size:
        raise ValueError(f"n_genes={n_genes} is too small; use at least {4 * program_size}.")
    rng = np.random.default_rng(biology_seed)
    gene_names = np.array([f"GENE{i:05d}" for i in range(n_genes)])
    chromosome = np.sort(rng.integers(1, 23, size=n_genes))
    base_log_mean = rng.normal(-1.0, 1.3, size=n_genes)
    gene_length_z = rng.normal(0.0, 1.0, size=n_genes)

    state_program_size = program_size if state_program_size is None else state_program_size
    if not 0 < state_program_size <= n_genes:
        raise ValueError(
            f"state_program_size must be between 1 and n_genes={n_genes}, got {state_program_size}."
        )
    if state_effect < 0:
        raise ValueError(f"state_effect must be non-negative, got {state_effect}.")

    def program(name: str, scale: float, size: int) -> np.ndarray:
        # A per-name generator keeps programs stable whatever else is requested.
        prng = np.random.default_rng([biology_seed, *name.encode()])
        effect = np.zeros(n_genes)
        genes = prng.choice(n_genes, size=size, replace=False)
        effect[genes] = prng.gamma(4.0, scale / 4.0, size=size)
        return effect

    tissue_programs = {t: program(f"tissue:{t}", 2.0, program_size) for t in tissues}
    state_programs = {s: program(f"state:{s}", state_effect, state_program_size) for s in states}
    technology_bias = {}
    for tech in technologies:
        params = TECHNOLOGIES.get(tech, {"bias_sd": 0.5})
        trng = np.random.default_rng([biology_seed, *f"tech:{tech}".encode()])
        bias = trng.normal(0.0, params["bias_sd"], size=n_genes)
        if "Smart" in tech or "plate" in tech.lower():
            # full-length protocols read along the whole transcript: long genes get more reads
            bias = bias + 0.6 * gene_length_z
        technology_bias[tech] = bias
    return GeneticBackground(
        gene_names=gene_names,
        chromosome=chromosome,
        base_log_mean=base_log_mean,
        gene_length_z=gene_length_z,
        tissue_programs=tissue_programs,
        state_programs=state_programs,
        technology_bias=technology_bias,
    )


def copy_number_profile(n_genes: int, rng: np.random.Generator, n_segments: int) -> np.ndarray:
    """Log copy-number shift per gene: contiguous gains and losses along the genome order."""
    profile = np.zeros(n_genes)
    for _ in range(n_segments):
        length = int(rng.integers(n_genes // 60, n_genes // 12))
        start = int(rng.integers(0, n_genes - length))
        # losses (1 copy), gains (3-4 copies) relative to diploid
        profile[start : start + length] += np.log(rng.choice([0.5, 1.5, 2.0]))
    return profile


def sample_counts(
    log_mean: np.ndarray,
    depth: np.ndarray,
    theta: float,
    rng: np.random.Generator,
) -> sparse.csr_matrix:
    """Negative-binomial counts (gamma-Poisson) with per-cell depth.

    ``log_mean`` is ``(n_cells, n_genes)``; each row is turned into proportions and scaled to
    ``depth``.
    """
    log_mean = log_mean - log_mean.max(axis=1, keepdims=True)
    prop = np.exp(log_mean)
    prop /= prop.sum(axis=1, keepdims=True)
    mu = prop * depth[:, None]
    rate = rng.gamma(theta, mu / theta)
    counts = rng.poisson(rate).astype(np.float32)
    return sparse.csr_matrix(counts)


def tumour_log_mean(
    bg: GeneticBackground,
    rng: np.random.Generator,
    n_cells: int,
    tissue: str,
    state_programs: np.ndarray,
    state_p: np.ndarray,
    technology: str | None = None,
    hallmark_cnv: np.ndarray | None = None,
    hallmark_cnv_rate: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the malignant cells of one tumour: each cell's state and its log mean expression.

    A cell's log mean is the baseline, the tissue program, the tumour's copy-number profile
    (contiguous gains and losses, plus ``hallmark_cnv`` with probability
    ``hallmark_cnv_rate``), a tumour-specific offset, the gene-specific bias of
    ``technology``, the program of the cell's state and cell-level noise. Every simulator
    draws its tumours with this function, so their cells share one model.

    Parameters
    ----------
    bg
        The genetic background (genes, baseline, programs, technology biases).
    rng
        Generator of the draws (advanced in place).
    n_cells
        Cells of the tumour.
    tissue
        Tissue of origin: a key of ``bg.tissue_programs``.
    state_programs
        ``(n_states, n_genes)`` effect of each malignant state.
    state_p
        Share of each state among the tumour's cells.
    technology
        Key of ``bg.technology_bias`` to add; ``None`` adds no technology bias.
    hallmark_cnv
        Log copy-number shift per gene that the tumour carries with probability
        ``hallmark_cnv_rate``; ``None`` draws no such event.
    hallmark_cnv_rate
        Probability of ``hallmark_cnv``.

    Returns
    -------
    cell_states
        Row of ``state_programs`` of each cell, ``(n_cells,)``.
    log_mean
        Log mean expression, ``(n_cells, n_genes)``.
    """
    n_genes = len(bg.gene_names)
    cell_states = rng.choice(len(state_programs), size=n_cells, p=state_p)
    cnv = copy_number_profile(n_genes, rng, n_segments=int(rng.integers(3, 8)))
    if hallmark_cnv is not None and rng.random() < hallmark_cnv_rate:
        cnv = cnv + hallmark_cnv
    offset = rng.normal(0.0, 0.25, size=n_genes)
    log_mean = bg.base_log_mean + bg.tissue_programs[tissue] + cnv + offset
    if technology is not None:
        log_mean = log_mean + bg.technology_bias[technology]
    noise = rng.normal(0.0, 0.2, size=(n_cells, n_genes))
    return cell_states, log_mean + state_programs[cell_states] + noise


def simulate_tumour(
    bg: GeneticBackground,
    rng: np.random.Generator,
    patient: str,
    n_cells: int,
    tissue: str,
    technology: str,
    state_names: Sequence[str],
    state_programs: np.ndarray,
    state_p: np.ndarray,
    hallmark_cnv: np.ndarray | None = None,
    hallmark_cnv_rate: float = 0.0,
) -> tuple[sparse.csr_matrix, pd.DataFrame]:
    """Simulate the single-cell counts of one tumour profiled by one technology.

    Cells are drawn by :func:`tumour_log_mean` and sequenced at the depth and dispersion of
    ``technology`` (:data:`TECHNOLOGIES`; an unknown technology gets those of ``"10x 3'"``).
    The other parameters are those of :func:`tumour_log_mean`; ``state_names`` names the rows
    of ``state_programs``.

    Returns
    -------
    counts
        ``(n_cells, n_genes)`` CSR float32 counts.
    obs
        ``tissue``, ``technology``, ``patient``, ``batch`` (equal to ``patient``) and
        ``cell_state`` of each cell.
    """
    cell_states, log_mean = tumour_log_mean(
        bg,
        rng,
        n_cells,
        tissue,
        state_programs,
        state_p,
        technology=technology,
        hallmark_cnv=hallmark_cnv,
        hallmark_cnv_rate=hallmark_cnv_rate,
    )
    params = TECHNOLOGIES.get(technology, TECHNOLOGIES["10x 3'"])
    depth = np.exp(rng.normal(params["log_depth"], params["depth_sd"], size=n_cells))
    counts = sample_counts(log_mean, depth, params["theta"], rng)
    obs = pd.DataFrame(
        {
            "tissue": tissue,
            "technology": technology,
            "patient": patient,
            "batch": patient,
            "cell_state": np.asarray(state_names)[cell_states],
        }
    )
    return counts, obs


def assemble_cells(
    blocks: list[sparse.spmatrix],
    obs_rows: list[pd.DataFrame],
    bg: GeneticBackground,
    cell_prefix: str = "",
) -> ad.AnnData:
    """Stack per-patient count blocks and their ``obs`` into one AnnData (categorical obs)."""
    obs = pd.concat(obs_rows, ignore_index=True)
    for col in obs.columns:
        obs[col] = obs[col].astype("category")
    obs.index = [f"{cell_prefix}cell{i}" for i in range(len(obs))]
    var = pd.DataFrame({"chromosome": bg.chromosome}, index=bg.gene_names)
    return ad.AnnData(X=sparse.vstack(blocks).tocsr(), obs=obs, var=var)


def simulate_malignant_atlas(
    n_cells: int = 3000,
    n_genes: int = 2000,
    tissues: Mapping[str, float] | Sequence[str] | None = None,
    technologies: Mapping[str, float] | None = None,
    states: Sequence[str] = MALIGNANT_STATES,
    n_patients_per_tissue: int = 3,
    min_cells_per_tissue: int = 20,
    seed: int = 0,
    biology_seed: int = 0,
    patient_prefix: str = "P",
    state_program_size: int | None = None,
    state_effect: float = 1.6,
) -> ad.AnnData:
    """Simulate malignant cells of many tumours, tissues and technologies.

    The counts are negative binomial. Each cell's mean expression combines a baseline, its
    tissue-of-origin program, one malignant-state program (states are shared across tissues
    in patient-specific proportions), the copy-number profile of its patient (contiguous
    gains and losses along the genome order, shared by all of the patient's cells: the main
    confounder of tumour data), a patient-specific offset, and the gene-specific bias, depth
    and dispersion of the technology the patient was profiled with (droplet 3' UMI counts or
    full-length plate reads).

    Parameters
    ----------
    n_cells
        Approximate number of cells (tissues are rounded and given at least
        ``min_cells_per_tissue``).
    n_genes
        Number of genes (``GENE00000`` ...), in genome order.
    tissues
        Tissue proportions, or names (equal proportions). Default: the published CancerGPT
        pretraining composition (:data:`PRETRAINING_TISSUE_COMPOSITION`), strongly imbalanced.
    technologies
        Probability of each technology per patient. Default: 75% ``"10x 3'"``,
        25% ``"Smart-seq2"``.
    states
        Malignant states to draw programs for.
    n_patients_per_tissue
        Tumours per tissue; each tumour is one ``batch``.
    min_cells_per_tissue
        Floor on the cells of the rarest tissue.
    seed
        Seed of the sampling (patients, cells, counts).
    biology_seed
        Seed of the gene programs; keep it equal across data sets that should share biology.
    patient_prefix
        Prefix of patient names, to keep patients of different data sets apart.
    state_program_size, state_effect
        Genes per malignant-state program (default 40) and its mean log-fold effect (default
        1.6): e.g. 100 genes at 0.4 give subtle states (see
        :func:`make_genetic_background`).

    Returns
    -------
    AnnData with raw counts in ``X`` (CSR, float32) and ``obs`` columns ``tissue``,
    ``technology``, ``patient``, ``batch`` (the tumour sample, equal to ``patient``) and
    ``cell_state``, all categorical; ``var`` has ``chromosome``.
    """
    if n_cells < 1:
        raise ValueError(f"n_cells must be positive, got {n_cells}.")
    rng = np.random.default_rng(seed)
    if tissues is None:
        tissues = PRETRAINING_TISSUE_COMPOSITION
    if not isinstance(tissues, Mapping):
        tissues = dict.fromkeys(tissues, 1.0)
    if technologies is None:
        technologies = {"10x 3'": 0.75, "Smart-seq2": 0.25}
    tissue_names = list(tissues)
    tissue_p = np.asarray([tissues[t] for t in tissue_names], dtype=float)
    tissue_p /= tissue_p.sum()
    tech_names = list(technologies)
    tech_p = np.asarray([technologies[t] for t in tech_names], dtype=float)
    tech_p /= tech_p.sum()

    bg = make_genetic_background(
        n_genes,
        tissue_names,
        states,
        tech_names,
        biology_seed,
        state_program_size=state_program_size,
        state_effect=state_effect,
    )
    state_matrix = np.stack([bg.state_programs[s] for s in states])
    cells_per_tissue = np.maximum(np.round(tissue_p * n_cells).astype(int), min_cells_per_tissue)

    blocks, obs_rows = [], []
    for t_idx, tissue in enumerate(tissue_names):
        n_t = int(cells_per_tissue[t_idx])
        split = rng.dirichlet(np.full(n_patients_per_tissue, 3.0))
        n_per_patient = np.maximum(np.round(split * n_t).astype(int), 1)
        # patients of one tissue: at least one of each technology when there are enough of them
        patient_tech = rng.choice(len(tech_names), size=n_patients_per_tissue, p=tech_p)
        if n_patients_per_tissue >= len(tech_names):
            missing = set(range(len(tech_names))) - set(patient_tech.tolist())
            for k, tech in enumerate(sorted(missing)):
                patient_tech[-(k + 1)] = tech
        for p_idx in range(n_patients_per_tissue):
            state_p = rng.dirichlet(np.full(len(states), 0.8))
            counts, obs = simulate_tumour(
                bg,
                rng,
                patient=f"{patient_prefix}{t_idx:02d}-{p_idx}",
                n_cells=int(n_per_patient[p_idx]),
                tissue=tissue,
                technology=tech_names[patient_tech[p_idx]],
                state_names=states,
                state_programs=state_matrix,
                state_p=state_p,
            )
            blocks.append(counts)
            obs_rows.append(obs)
    return assemble_cells(blocks, obs_rows, bg)
