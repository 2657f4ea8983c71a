"""Simulated on-disk pretraining corpora: many studies, each with its own genes and tissues."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._malignant_atlas import PRETRAINING_TISSUE_COMPOSITION, simulate_malignant_atlas


def write_simulated_corpus(
    directory: str | os.PathLike,
    n_files: int = 10,
    n_cells_per_file: int = 2000,
    n_genes: int = 2000,
    tissues_per_file: tuple[int, int] = (2, 5),
    gene_fraction: tuple[float, float] = (0.7, 0.95),
    seed: int = 0,
    biology_seed: int = 0,
) -> list[Path]:
    """Write a corpus of simulated studies as h5ad files, one study at a time.

    Each study (file ``study00.h5ad``...) profiles a few tissues, drawn with the weights of the
    published pretraining composition (so the corpus is imbalanced the same way), with one
    technology mix, and measures its own random subset of the genes (the files' gene sets
    differ, as real studies' do). All studies share the biology of ``biology_seed``.

    Parameters
    ----------
    directory
        Folder to write into (created if needed).
    n_files
        Number of studies.
    n_cells_per_file
        Approximate cells per study.
    n_genes
        Genes of the shared gene space (``GENE00000``...).
    tissues_per_file
        Range of the number of tissues per study.
    gene_fraction
        Range of the fraction of genes each study measures.
    seed, biology_seed
        Seeds of the sampling and of the gene programs.

    Returns
    -------
    Paths of the files written.
    """
    if n_files < 1 or n_cells_per_file < 1:
        raise ValueError("n_files and n_cells_per_file must be positive.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = np.array(list(PRETRAINING_TISSUE_COMPOSITION))
    weights = np.array(list(PRETRAINING_TISSUE_COMPOSITION.values()), dtype=float)
    paths = []
    for f in range(n_files):
        n_tissues = int(rng.integers(tissues_per_file[0], tissues_per_file[1] + 1))
        picked = rng.choice(
            len(names), size=min(n_tissues, len(names)), replace=False, p=weights / weights.sum()
        )
        tissues = {str(names[i]): weights[i] for i in picked}
        plate_share = float(rng.choice([0.0, 0.25, 1.0], p=[0.5, 0.3, 0.2]))
        technologies = {"10x 3'": 1.0 - plate_share, "Smart-seq2": plate_share}
        technologies = {k: v for k, v in technologies.items() if v > 0}
        adata = simulate_malignant_atlas(
            n_cells=n_cells_per_file,
            n_genes=n_genes,
            tissues=tissues,
            technologies=technologies,
            n_patients_per_tissue=2,
            min_cells_per_tissue=max(20, n_cells_per_file // 50),
            seed=seed * 1000 + f,
            biology_seed=biology_seed,
            patient_prefix=f"S{f:02d}-P",
        )
        fraction = rng.uniform(*gene_fraction)
        keep = np.sort(rng.choice(n_genes, size=round(fraction * n_genes), replace=False))
        adata = adata[:, keep].copy()
        adata.obs_names = [f"S{f:02d}-{name}" for name in adata.obs_names]
        path = directory / f"study{f:02d}.h5ad"
        adata.write_h5ad(path)
        paths.append(path)
    return paths
