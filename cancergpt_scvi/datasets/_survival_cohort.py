"""A simulated bulk-RNA survival cohort: tumours as mixtures of malignant cells and stroma."""

from __future__ import annotations

from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd

from ._malignant_atlas import (
    MALIGNANT_STATES,
    make_genetic_background,
    sample_counts,
    tumour_log_mean,
)

#: Stromal cell types mixed into each bulk tumour sample (drawn as extra gene programs).
STROMA_TYPES: tuple[str, ...] = ("Stroma-fibroblast", "Stroma-immune")

#: Name of the bulk technology (its own gene-specific bias, plus a gene-length effect).
BULK_TECHNOLOGY = "bulk RNA-seq"

#: Default hazard drivers: log hazard ratio per unit fraction of malignant cells in a state.
DEFAULT_RISK_PROGRAM: dict[str, float] = {"mesenchymal": 4.0, "cycling": 3.0}

_STAGES = ("I", "II", "III", "IV")


def _softmax_rows(log_mean: np.ndarray) -> np.ndarray:
    z = np.exp(log_mean - log_mean.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def simulate_survival_cohort(
    n_patients: int = 300,
    n_genes: int = 2000,
    tissue: str = "Breast",
    risk_program: Mapping[str, float] | None = None,
    cells_per_patient: int = 100,
    state_concentration: float = 0.8,
    purity: tuple[float, float] = (7.0, 3.0),
    median_survival: float = 60.0,
    weibull_shape: float = 1.3,
    follow_up: tuple[float, float] = (12.0, 120.0),
    loss_to_follow_up: float = 200.0,
    stage_noise: float = 1.0,
    depth: float = 2e7,
    seed: int = 0,
    biology_seed: int = 0,
    patient_prefix: str = "TCGA-SIM",
) -> ad.AnnData:
    """Simulate bulk tumour RNA-seq of a patient cohort with survival driven by malignant states.

    Each patient's tumour is a set of simulated malignant cells (as in
    :func:`~cancergpt_scvi.datasets.simulate_malignant_atlas`: baseline, the tissue program,
    malignant-state programs in patient-specific proportions, the patient's copy-number
    profile and offset, cell-level noise) plus stroma (fibroblast and immune programs)
    at a patient-specific purity. The bulk profile is the sum of the cells' expression
    proportions, seen through a bulk technology (its own gene-specific bias and a read-count
    bias towards long genes, as full-length bulk libraries have) and sampled as negative
    binomial counts at bulk depth. Gene names, baseline, tissue and state programs match
    the atlas simulated with the same ``n_genes`` and ``biology_seed``, so a CancerGPT model
    pretrained on such an atlas can embed the cohort.

    Survival follows a Weibull proportional-hazards model whose log hazard ratio
    (``true_risk``) is a known linear function of the fraction of malignant cells in the
    ``risk_program`` states. Censoring combines staggered administrative follow-up and
    random loss to follow-up. A clinical ``stage`` is a noisy function of the true risk,
    and ``age`` carries no risk.

    Parameters
    ----------
    n_patients
        Number of patients (bulk samples).
    n_genes
        Number of genes; equal to the pretraining atlas' to share its genes and programs.
    tissue
        Tissue of origin of every tumour.
    risk_program
        ``{state: weight}``: log hazard ratio per unit fraction of malignant cells in that
        state (relative to an even mix). Default :data:`DEFAULT_RISK_PROGRAM`.
    cells_per_patient
        Malignant cells summed into each bulk profile.
    state_concentration
        Dirichlet concentration of each tumour's state proportions (lower: more extreme).
    purity
        Beta distribution parameters of tumour purity (share of malignant RNA).
    median_survival
        Median survival time (months) of a patient with ``true_risk = 0``.
    weibull_shape
        Weibull shape of the event times (> 1: hazard rises with time).
    follow_up
        Range of the uniform administrative follow-up (months): patients enrolled at
        different times are censored when the study closes.
    loss_to_follow_up
        Mean time (months) to random loss to follow-up.
    stage_noise
        Noise of the clinical stage around the true risk, in units of the risk's spread.
    depth
        Mean sequencing depth (reads per sample).
    seed
        Seed of the patients, cells, counts and outcomes.
    biology_seed
        Seed of the gene programs; equal to the pretraining atlas' to share biology.
    patient_prefix
        Prefix of the sample names.

    Returns
    -------
    AnnData with raw counts in ``X`` (dense float32) and in ``layers["counts"]``,
    transcripts per million in ``layers["tpm"]``; ``var`` has ``chromosome`` and
    ``gene_length``; ``obs`` has ``duration`` (months), ``event`` (1 = death observed),
    ``true_risk``, ``stage`` (I–IV, categorical), ``stage_number``, ``age``, ``purity``,
    ``frac_<state>`` for every malignant state, ``tissue``, ``technology`` and ``patient``.
    """
    if n_patients < 2:
        raise ValueError(f"n_patients must be at least 2, got {n_patients}.")
    if cells_per_patient < 1:
        raise ValueError(f"cells_per_patient must be positive, got {cells_per_patient}.")
    if risk_program is None:
        risk_program = DEFAULT_RISK_PROGRAM
    unknown = set(risk_program) - set(MALIGNANT_STATES)
    if unknown:
        raise ValueError(
            f"risk_program names unknown states {sorted(unknown)}; choose among "
            f"{list(MALIGNANT_STATES)}."
        )
    lo, hi = follow_up
    if not 0 < lo <= hi:
        raise ValueError(f"follow_up must be (low, high) with 0 < low <= high, got {follow_up}.")

    rng = np.random.default_rng(seed)
    states = list(MALIGNANT_STATES)
    bg = make_genetic_background(
        n_genes,
        tissues=[tissue, *STROMA_TYPES],
        states=states,
        technologies=[BULK_TECHNOLOGY],
        biology_seed=biology_seed,
    )
    state_matrix = np.stack([bg.state_programs[s] for s in states])
    weights = np.array([float(risk_program.get(s, 0.0)) for s in states])
    # full-length bulk libraries: reads scale with transcript length
    length_effect = 0.6 * bg.gene_length_z
    gene_length = 2000.0 * np.exp(length_effect)
    bulk_bias = bg.technology_bias[BULK_TECHNOLOGY] + length_effect
    stroma_profiles = np.stack(
        [_softmax_rows(bg.base_log_mean + bg.tissue_programs[s]) for s in STROMA_TYPES]
    )

    fractions = rng.dirichlet(np.full(len(states), state_concentration), size=n_patients)
    purities = np.clip(rng.beta(*purity, size=n_patients), 0.1, 0.98)
    log_means = np.empty((n_patients, n_genes))
    for p in range(n_patients):
        _, cell_log_mean = tumour_log_mean(
            bg, rng, cells_per_patient, tissue, state_matrix, fractions[p]
        )
        # a bulk library pools the RNA of its cells: the sum of their expression proportions
        malignant = _softmax_rows(cell_log_mean).mean(axis=0)
        stroma = rng.dirichlet(np.full(len(STROMA_TYPES), 2.0)) @ stroma_profiles
        mixture = purities[p] * malignant + (1.0 - purities[p]) * stroma
        log_means[p] = np.log(mixture) + bulk_bias
    sample_depth = np.exp(rng.normal(np.log(depth), 0.3, size=n_patients))
    counts = sample_counts(log_means, sample_depth, theta=30.0, rng=rng).toarray()

    # outcome: Weibull proportional hazards in the known malignant program
    true_risk = (fractions - 1.0 / len(states)) @ weights
    scale = median_survival / np.log(2.0) ** (1.0 / weibull_shape)
    u = rng.uniform(size=n_patients)
    event_time = scale * (-np.log(u) / np.exp(true_risk)) ** (1.0 / weibull_shape)
    censor_time = np.minimum(
        rng.uniform(lo, hi, size=n_patients), rng.exponential(loss_to_follow_up, n_patients)
    )
    # months with one decimal, as registries report them; ties are real and handled by Efron
    duration = np.maximum(np.round(np.minimum(event_time, censor_time), 1), 0.1)
    event = (event_time <= censor_time).astype(np.int64)

    spread = true_risk.std() if true_risk.std() > 0 else 1.0
    stage_score = true_risk + rng.normal(0.0, stage_noise * spread, size=n_patients)
    stage_number = 1 + np.searchsorted(np.quantile(stage_score, [0.25, 0.5, 0.75]), stage_score)

    names = [f"{patient_prefix}-{i:04d}" for i in range(n_patients)]
    obs = pd.DataFrame(
        {
            "duration": duration,
            "event": event,
            "true_risk": true_risk,
            "stage": pd.Categorical(
                np.asarray(_STAGES)[stage_number - 1], categories=_STAGES, ordered=True
            ),
            "stage_number": stage_number.astype(float),
            "age": np.round(rng.normal(60.0, 10.0, size=n_patients), 0),
            "purity": purities,
            **{f"frac_{s}": fractions[:, k] for k, s in enumerate(states)},
            "tissue": pd.Categorical([tissue] * n_patients),
            "technology": pd.Categorical([BULK_TECHNOLOGY] * n_patients),
            "patient": pd.Categorical(names),
        },
        index=names,
    )
    var = pd.DataFrame(
        {"chromosome": bg.chromosome, "gene_length": gene_length}, index=bg.gene_names
    )
    x = counts.astype(np.float32)
    rate = x / gene_length[None, :]
    tpm = (1e6 * rate / rate.sum(axis=1, keepdims=True)).astype(np.float32)
    adata = ad.AnnData(X=x, obs=obs, var=var, layers={"counts": x.copy(), "tpm": tpm})
    adata.uns["survival_simulation"] = {
        "risk_program": dict(risk_program),
        "tissue": tissue,
        "median_survival": median_survival,
        "weibull_shape": weibull_shape,
    }
    return adata
