"""What the benchmark scripts share.

- the ``--smoke`` option: every script's smallest setting, for CI (:func:`parse_smoke`);
- the simulated pan-cancer atlas and the zero-shot protocols scored on it (``new_patients``,
  ``new_tissue``, ``subtle_states``), with the command-line options that size them;
- the package's default pretraining recipe on those cells (as ``cancergpt-scvi demo``);
- scANVI with scArches-style query mapping, the annotation baseline
  (:func:`scanvi_query_mapping`);
- Markdown tables, a process's peak resident memory and the machine's matrix-multiply rate.

The scripts import this module by name (``from _common import ...``): Python puts the folder
of the script it runs first on ``sys.path``.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scvi
import torch

from cancergpt_scvi.datasets import simulate_glioblastoma, simulate_malignant_atlas
from cancergpt_scvi.model import CancerGPTModel


# -- the --smoke option ------------------------------------------------------------------------
def parse_smoke(
    parser: argparse.ArgumentParser,
    smoke: Mapping[str, object],
    argv: Sequence[str] | None = None,
    help: str = "smallest setting (CI)",
    scratch: str = "out",
) -> argparse.Namespace:
    """Parse the command line; with ``--smoke``, ``smoke`` replaces the defaults.

    Options given on the command line still win over ``smoke``. When ``smoke`` sets the folder
    option ``scratch`` (``out`` unless told) to None and none is given, that folder is a
    temporary one removed at exit (kept alive as ``args.scratch``).
    """
    parser.add_argument("--smoke", action="store_true", help=help)
    args = parser.parse_args(argv)
    if not args.smoke:
        return args
    parser.set_defaults(**smoke)
    args = parser.parse_args(argv)
    if scratch in smoke and getattr(args, scratch) is None:
        args.scratch = tempfile.TemporaryDirectory(prefix=f"{Path(parser.prog).stem}_smoke_")
        setattr(args, scratch, Path(args.scratch.name))
    return args


# -- the simulated atlas and the zero-shot protocols -------------------------------------------
#: The zero-shot protocols (see ``benchmarks/integration.py``).
PROTOCOLS = ("new_patients", "new_tissue", "subtle_states")
#: The subtle-state simulator setting: weak programs on 5% of the genes (default: 40 genes
#: at a mean log-fold 1.6).
SUBTLE_STATES = {"state_program_size": 100, "state_effect": 0.7}
#: Batch definitions: ``obs`` column scored as batch.
BATCHES = ("patient", "technology")
#: The label of every protocol: the malignant state.
LABEL = "cell_state"
#: The tissue ``new_tissue`` leaves out of pretraining.
HELD_OUT_TISSUE = "Brain"


def add_atlas_arguments(parser: argparse.ArgumentParser, glioblastoma: bool = True) -> None:
    """The options that size the simulated data; ``glioblastoma``: those of ``new_tissue`` too."""
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the simulated data")
    parser.add_argument("--atlas-cells", type=int, default=4500)
    parser.add_argument("--patients-per-tissue", type=int, default=6)
    parser.add_argument(
        "--holdout", type=float, default=1 / 3, help="share of each tissue's patients held out"
    )
    if glioblastoma:
        parser.add_argument("--gbm-cells", type=int, default=1500)
        parser.add_argument("--gbm-patients", type=int, default=12)
    parser.add_argument("--n-genes", type=int, default=2000)


def _clean(adata: ad.AnnData) -> ad.AnnData:
    """A copy with the unused categories of every categorical ``obs`` column dropped."""
    adata = adata.copy()
    for col in adata.obs.columns:
        if isinstance(adata.obs[col].dtype, pd.CategoricalDtype):
            adata.obs[col] = adata.obs[col].cat.remove_unused_categories()
    return adata


def _describe(name: str, adata: ad.AnnData) -> str:
    obs = adata.obs
    techs = obs.groupby("technology", observed=True)["patient"].nunique().to_dict()
    return (
        f"{name}: {adata.n_obs} cells, {obs['patient'].nunique()} patients {techs}, "
        f"{obs['tissue'].nunique()} tissues, {obs[LABEL].nunique()} states"
    )


def simulate_atlas(args, patient_prefix: str = "P", **state_settings) -> ad.AnnData:
    """The pan-cancer atlas of ``--atlas-cells``, ``--n-genes``, ``--patients-per-tissue``."""
    return simulate_malignant_atlas(
        n_cells=args.atlas_cells,
        n_genes=args.n_genes,
        n_patients_per_tissue=args.patients_per_tissue,
        seed=args.data_seed,
        patient_prefix=patient_prefix,
        **state_settings,
    )


def split_new_patients(atlas: ad.AnnData, args) -> tuple[ad.AnnData, ad.AnnData]:
    """``(pretraining cells, query cells)``: ``--holdout`` of every tissue's patients held out."""
    # the same share of every tissue's patients held out, drawn from the data seed
    rng = np.random.default_rng(args.data_seed)
    held_out: list[str] = []
    for _, patients in atlas.obs.groupby("tissue", observed=True)["patient"]:
        names = sorted(patients.unique())
        n_out = min(max(1, round(args.holdout * len(names))), len(names) - 1)
        held_out += list(rng.choice(names, size=n_out, replace=False))
    query = atlas.obs["patient"].isin(held_out).to_numpy()
    return _clean(atlas[~query]), _clean(atlas[query])


def simulate_protocols(args) -> dict[str, tuple[ad.AnnData, ad.AnnData]]:
    """``{protocol: (pretraining cells, query cells)}`` of ``--protocol``, from ``--data-seed``.

    ``new_patients``: ``--holdout`` of every tissue's patients of the atlas are the query.
    ``subtle_states``: the same on an atlas with :data:`SUBTLE_STATES`. ``new_tissue``: the
    atlas without :data:`HELD_OUT_TISSUE` is pretrained on, glioblastoma-like cells of other
    patients are the query.
    """
    atlas = simulate_atlas(args)
    data = {}
    if "new_patients" in args.protocol:
        data["new_patients"] = split_new_patients(atlas, args)
    if "subtle_states" in args.protocol:
        subtle = simulate_atlas(args, patient_prefix="S", **SUBTLE_STATES)
        data["subtle_states"] = split_new_patients(subtle, args)
    if "new_tissue" in args.protocol:
        gbm = simulate_glioblastoma(
            n_cells=args.gbm_cells,
            n_patients=args.gbm_patients,
            n_genes=args.n_genes,
            seed=args.data_seed + 1,
            patient_prefix="GBM",
        )
        no_brain = (atlas.obs["tissue"] != HELD_OUT_TISSUE).to_numpy()
        data["new_tissue"] = (_clean(atlas[no_brain]), _clean(gbm))
    for protocol, (ref, query) in data.items():
        leaked = set(ref.obs["patient"]) & set(query.obs["patient"])
        assert not leaked, f"{protocol}: query patients in pretraining: {sorted(leaked)}"
        for batch in BATCHES:
            assert query.obs[batch].nunique() >= 2, f"{protocol}: a single {batch} in the query"
        print(_describe(f"{protocol} pretraining", ref), flush=True)
        print(_describe(f"{protocol} query", query), flush=True)
    if "new_tissue" in data:
        assert HELD_OUT_TISSUE not in set(data["new_tissue"][0].obs["tissue"])
    return data


# -- the default pretraining recipe ------------------------------------------------------------
def setup_atlas(adata: ad.AnnData) -> ad.AnnData:
    """Register the atlas' cells as ``cancergpt-scvi demo`` does: batch, technology, tissue."""
    CancerGPTModel.setup_anndata(
        adata, batch_key="batch", technology_key="technology", tissue_key="tissue"
    )
    return adata


def pretrain(
    cells: ad.AnnData, seed: int, max_epochs: int, preset: str = "cpu-small", **train_kwargs
) -> CancerGPTModel:
    """The package's default recipe (``cancergpt-scvi demo``) on cells :func:`setup_atlas` set up.

    ``seed`` is scvi-tools' global seed (initialisation, minibatches, masking);
    ``train_kwargs`` go to ``model.train`` (every other argument at the library's default).
    """
    scvi.settings.seed = seed
    model = CancerGPTModel(cells, preset=preset)
    model.train(max_epochs=max_epochs, enable_progress_bar=False, **train_kwargs)
    return model


# -- scANVI with query mapping -----------------------------------------------------------------
def scanvi_query_mapping(
    reference: ad.AnnData,
    query: ad.AnnData,
    batch_key: str,
    label_key: str,
    seed: int,
    args,
    n_top_genes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """scANVI on the reference's counts, the query mapped scArches-style: labels, uncertainty.

    scVI (``args.scvi_epochs``), then scANVI (``args.scanvi_epochs``), on the reference (with
    ``n_top_genes``: its highly variable genes, seurat_v3 on counts within ``batch_key``); the
    query, its labels hidden, mapped with ``SCANVI.load_query_data`` and trained
    ``args.query_epochs`` (weight decay 0); uncertainty = 1 - the largest probability.
    """
    scvi.settings.seed = seed
    ref = reference.copy()
    if n_top_genes:
        sc.pp.highly_variable_genes(
            ref, n_top_genes=n_top_genes, flavor="seurat_v3", batch_key=batch_key
        )
        ref = ref[:, ref.var["highly_variable"].to_numpy()].copy()
    ref.obsm = {}
    scvi.model.SCVI.setup_anndata(ref, batch_key=batch_key, labels_key=label_key)
    vae = scvi.model.SCVI(ref)
    vae.train(max_epochs=args.scvi_epochs, enable_progress_bar=False)
    model = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category="Unknown")
    model.train(max_epochs=args.scanvi_epochs, n_samples_per_label=100, enable_progress_bar=False)
    q = query[:, ref.var_names].copy()
    q.obsm = {}
    q.obs[label_key] = "Unknown"  # the query's labels are not shown to scANVI
    scvi.model.SCANVI.prepare_query_anndata(q, model)
    mapped = scvi.model.SCANVI.load_query_data(q, model)
    mapped.train(
        max_epochs=args.query_epochs,
        plan_kwargs={"weight_decay": 0.0},
        check_val_every_n_epoch=None,
        enable_progress_bar=False,
    )
    probs = mapped.predict(soft=True)
    return probs.idxmax(axis=1).to_numpy(), 1.0 - probs.max(axis=1).to_numpy()


# -- reporting and machine measurements --------------------------------------------------------
def markdown_table(frame: pd.DataFrame, float_format: str = ".3f") -> str:
    """A frame as a Markdown table, its index levels as the leading columns (no ``tabulate``).

    Floats are written with ``float_format`` (a format spec), everything else with ``str``.
    """
    frame = frame.reset_index()
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * frame.shape[1]]
    for row in frame.itertuples(index=False):
        cells = [format(v, float_format) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rss_kib() -> tuple[int, int]:
    """This process's resident set size and its peak (``VmRSS``, ``VmHWM``), KiB.

    Read from ``/proc/self/status``: ``getrusage``'s ``ru_maxrss`` of a subprocess includes its
    parent's resident size at the fork (Linux keeps the peak across ``exec``), so it would
    report the parent's memory, not the child's. Elsewhere: ``ru_maxrss`` twice.
    """
    try:
        fields = dict(
            line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
        )
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
    except (OSError, KeyError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak, peak


def matmul_gflops(
    dtype: torch.dtype, max_n: int = 2048, repeats: int = 3, min_n: int = 256
) -> tuple[float, int]:
    """Best-of-``repeats`` GFLOP/s of a square ``torch.mm``, and the size used.

    The size doubles from ``min_n`` until one product takes 0.3 s (or reaches ``max_n``), so a
    dtype without hardware support (bf16 on AVX2 CPUs: ~100x slower) is measured quickly; that
    first product is the warm-up.
    """
    n = min_n
    while True:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        start = time.perf_counter()
        a @ b
        if time.perf_counter() - start > 0.3 or n >= max_n:
            break
        n *= 2
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9, n
