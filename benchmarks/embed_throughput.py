"""Embedding throughput: cells/s of get_latent_representation, next to the machine's matmul limit.

Measures, on this machine:

1. plain matrix-multiply GFLOP/s (``torch.mm`` of square float32 and bfloat16 matrices): the
   ceiling any transformer can approach;
2. a release-size checkpoint folder (E=256, 6 layers, 8 heads, FFN 512, 28,725-token
   vocabulary, random weights) loaded with ``CancerGPTModel.load_pretrained``, embedding cells
   with 1,199 highly variable genes, i.e. 1,200 tokens per cell, in fp32 and bf16;
3. the default (release) architecture of ``CancerGPTModel(adata, preset="release")`` at 1,200
   tokens (cells expressing at least 1,199 genes), and the ``"cpu-small"`` preset (128 tokens).

Achieved GFLOP/s count the encoder's matrix products (q/k/v and output projections, the two
attention products, the feed-forward network): ~16.4 GFLOP per cell at 1,200 tokens for the
release size. Timings on a shared machine are noisy: the load average is printed with them.

Usage::

    python benchmarks/embed_throughput.py              # ~5 min on 2 busy cores
    python benchmarks/embed_throughput.py --cells 16 --repeats 1   # quick look
    python benchmarks/embed_throughput.py --smoke      # smallest setting (CI): seconds

``--smoke`` runs every step at the smallest size: matrix multiplies up to 256^3, 2 cells (1 in
bf16) of 200 genes (201 tokens) through the release-size checkpoint and the release preset,
16 cells through ``cpu-small``, one repeat; options given with it still apply.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch
from scipy import sparse

from cancergpt_scvi import CancerGPTModel
from cancergpt_scvi.release import release_encoder

RELEASE_ARGS = {
    "n_bins": 51,
    "max_seq_len": 1200,
    "trunc_by_sample": True,
    "nlayers": 6,
    "nheads": 8,
    "embsize": 256,
    "d_hid": 512,
    "dropout": 0.2,
    "n_layers_cls": 3,
}
RELEASE_VOCAB_SIZE = 28_725
#: Defaults of ``--smoke``: the smallest setting, for CI.
SMOKE = {
    "cells": 2,
    "bf16_cells": 1,
    "small_cells": 16,
    "batch_size": 2,
    "repeats": 1,
    "release_genes": 200,
    "dense_genes": 200,
    "matmul_max": 256,
}


def encoder_flops(n_tokens: int, embed_dim: int, ffn_dim: int, n_layers: int) -> float:
    """Multiply-add FLOPs (2 per MAC) of the encoder layers for one cell of ``n_tokens``."""
    length, e, h = n_tokens, embed_dim, ffn_dim
    per_layer = (
        2 * length * e * 3 * e  # q, k, v projections
        + 2 * 2 * length * length * e  # q k^T and attention @ v
        + 2 * length * e * e  # output projection
        + 2 * 2 * length * e * h  # feed-forward
    )
    return float(n_layers * per_layer)


def matmul_gflops(dtype: torch.dtype, max_n: int = 2048, repeats: int = 3) -> tuple[float, int]:
    """Best-of-``repeats`` GFLOP/s of a square ``torch.mm``, and the size used.

    The size doubles from 256 until one product takes 0.3 s (or reaches ``max_n``), so a
    dtype without hardware support (bf16 on AVX2 CPUs: ~100x slower) is measured quickly.
    """
    n = 256
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


def write_release_folder(folder: Path, seed: int = 0) -> Path:
    """A folder of the release layout (model.pth, args.json, vocab.json), random weights."""
    gen = torch.Generator().manual_seed(seed)
    vocab = {"<cls>": 0, "<pad>": 1, "<eoc>": 2}
    vocab.update({f"G{i}": i for i in range(3, RELEASE_VOCAB_SIZE)})
    a = RELEASE_ARGS
    state = {}
    for key, meta in release_encoder(a, len(vocab)).state_dict().items():
        shape = meta.shape
        if key.endswith("bias"):
            state[key] = 0.02 * torch.randn(shape, generator=gen)
        elif "norm" in key:
            state[key] = 1 + 0.1 * torch.randn(shape, generator=gen)
        else:
            state[key] = torch.randn(shape, generator=gen) / np.sqrt(shape[-1])
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "model.pth")
    (folder / "args.json").write_text(json.dumps(RELEASE_ARGS))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    return folder


def count_cells(n_cells: int, n_genes: int, mean: float, seed: int = 0) -> ad.AnnData:
    """Poisson counts of genes named like the benchmark vocabulary (G3, G4, ...)."""
    rng = np.random.default_rng(seed)
    rates = rng.gamma(0.8, mean / 0.8, size=n_genes) * rng.gamma(4, 0.25, size=(n_cells, 1))
    x = sparse.csr_matrix(rng.poisson(rates).astype(np.float32))
    obs = pd.DataFrame(index=[f"c{i}" for i in range(n_cells)])
    return ad.AnnData(x, obs=obs, var=pd.DataFrame(index=[f"G{i + 3}" for i in range(n_genes)]))


def time_embedding(model, repeats: int, n_cells: int, **kwargs) -> float:
    """Best-of-``repeats`` seconds to embed ``n_cells`` cells (after a 2-cell warm-up)."""
    model.get_latent_representation(progress_bar=False, indices=np.arange(2), **kwargs)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        model.get_latent_representation(progress_bar=False, indices=np.arange(n_cells), **kwargs)
        best = min(best, time.perf_counter() - start)
    return best


def token_count(model) -> int:
    """Tokens per cell of the registered data's first cells (``<cls>`` included)."""
    x = torch.as_tensor(model.adata.X[:8].toarray())
    tokens = model.module.tokenize(x)
    return int((~tokens.padding_mask).sum(dim=1).min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=32, help="cells per fp32 timing")
    parser.add_argument("--bf16-cells", type=int, default=4, help="cells per bf16 timing")
    parser.add_argument("--small-cells", type=int, default=512, help="cells for cpu-small")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--release-genes", type=int, default=3000, help="genes of the release-checkpoint cells"
    )
    parser.add_argument(
        "--dense-genes", type=int, default=1500, help="genes of the release-preset cells"
    )
    parser.add_argument("--matmul-max", type=int, default=2048, help="largest matmul side")
    parser.add_argument("--smoke", action="store_true", help="smallest setting (CI)")
    args = parser.parse_args()
    if args.smoke:
        parser.set_defaults(**SMOKE)
        args = parser.parse_args()
    logging.getLogger("scvi").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"native bf16 kernels: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}"
    )
    print(f"load average at start (1, 5, 15 min): {os.getloadavg()}")
    peak = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        peak[name], size = matmul_gflops(dtype, max_n=args.matmul_max)
        print(f"plain matmul ({size}^3 torch.mm) {name}: {peak[name]:.2f} GFLOP/s")

    rows = []

    def measure(label, model, precision, n_cells, **kwargs):
        tokens = token_count(model)
        m = model.module
        flops = encoder_flops(
            tokens, m.embed_dim, m.encoder.layers[0].linear1.out_features, len(m.encoder.layers)
        )
        seconds = time_embedding(
            model,
            args.repeats,
            n_cells,
            precision=precision,
            batch_size=args.batch_size,
            **kwargs,
        )
        rows.append((label, precision, tokens, n_cells, seconds, flops / 1e9, peak[precision]))
        print(f"  {label} {precision}: {n_cells / seconds:.3g} cells/s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        folder = write_release_folder(Path(tmp) / "assets")
        # 3,000 vocabulary genes: 1,199 become tokens, so every cell has 1,200 tokens
        # 256 cells for a stable gene selection; the timings embed the first --cells of them
        adata = count_cells(max(args.cells, args.bf16_cells, 256), args.release_genes, mean=2.0)
        model = CancerGPTModel.load_pretrained(folder, adata, device="cpu")
        measure("load_pretrained (release checkpoint)", model, "fp32", args.cells, seed=0)
        measure("load_pretrained (release checkpoint)", model, "bf16", args.bf16_cells, seed=0)

    # the default (release) architecture as trained here: each cell's expressed genes
    dense = count_cells(args.cells, args.dense_genes, mean=30.0, seed=1)
    CancerGPTModel.setup_anndata(dense)
    measure(
        "CancerGPTModel(preset='release')",
        CancerGPTModel(dense, preset="release"),
        "fp32",
        args.cells,
    )

    cells = count_cells(args.small_cells, 1000, mean=5.0, seed=2)
    CancerGPTModel.setup_anndata(cells)
    measure(
        "CancerGPTModel(preset='cpu-small')",
        CancerGPTModel(cells, preset="cpu-small"),
        "fp32",
        args.small_cells,
    )

    table = pd.DataFrame(
        rows,
        columns=[
            "model",
            "precision",
            "tokens",
            "cells",
            "seconds",
            "gflop_per_cell",
            "matmul_gflops_same_precision",
        ],
    )
    table["cells_per_s"] = table["cells"] / table["seconds"]
    table["achieved_gflops"] = table["cells_per_s"] * table["gflop_per_cell"]
    table["fraction_of_fp32_matmul"] = table["achieved_gflops"] / peak["fp32"]
    with pd.option_context(
        "display.width", 250, "display.max_columns", 20, "display.float_format", "{:.3g}".format
    ):
        print(table.to_string(index=False))
    fp32, bf16 = table.loc[0, "cells_per_s"], table.loc[1, "cells_per_s"]
    print(
        f"release checkpoint: fp32 reaches {table.loc[0, 'fraction_of_fp32_matmul']:.0%} of "
        f"fp32 matmul GFLOP/s (target >= 70%); bf16 / fp32 speed = {bf16 / fp32:.2f}x "
        "(target >= 2x)"
    )
    print(f"load average at end (1, 5, 15 min): {os.getloadavg()}")


if __name__ == "__main__":
    main()
