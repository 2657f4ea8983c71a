"""Embedding throughput and memory: our encoder against the authors'-style path and matmul.

Measures, in one run on this machine (CPU):

1. the plain matrix-multiply rate (GFLOP/s of ``torch.mm`` on square float32 matrices; bfloat16
   too, for reference): the ceiling any transformer can approach;
2. on a release-size checkpoint folder (E=256, 6 layers, 8 heads, FFN 512, 28,725-token
   vocabulary, random weights) loaded with ``CancerGPTModel.load_pretrained``, the same cells
   (1,199 highly variable genes, i.e. 1,200 tokens each) embedded by

   - the authors'-style path: ``torch.nn.TransformerEncoder`` of post-norm
     ``nn.TransformerEncoderLayer`` (ReLU, ``batch_first``) holding the same weights, with
     ``src_key_padding_mask``, every layer computed in full, the ``<cls>`` output taken
     afterwards (eval + inference mode);
   - ours, ``get_latent_representation(precision="fp32")`` (the last layer computes the
     ``<cls>`` position only; exact, checked: per-cell cosine >= 0.99999 to the authors' path);
   - ours with the encoder's ``nn.Linear`` layers quantised by
     ``torch.ao.quantization.quantize_dynamic`` (int8; measured only, not shipped);
   - ours in ``precision="bf16"``, where the CPU has native bfloat16 (AVX512-BF16 / AMX);

   all with deterministic binning (so every path sees the same tokens) and tokenisation
   included in every timing; the best of ``--repeats`` after a one-batch warm-up;
3. the peak resident set size of a subprocess that embeds N cells streamed from a backed
   h5ad (``read_h5ad(backed="r")``, ``chunk_size=10_000``, ``batch_size=64``) with the
   ``"cpu-small"`` preset, for N = 10,000 and 100,000 (target: within 1.2x); the peak is the
   child's ``VmHWM`` (``ru_maxrss`` of a child counts its parent's memory at the fork).

Effective GFLOP/s count the FLOPs of the full forward (q/k/v and output projections, both
attention products, the feed-forward network, in every layer: ~16.4 GFLOP per cell at 1,200
tokens) for every path, also ours that skips most of the last layer. The acceptance lines of
issue 20 close the report. Timings on a shared machine are noisy: the load average is printed.

Usage::

    python benchmarks/embed_throughput.py              # ~4 min on 2 cores
    python benchmarks/embed_throughput.py --cells 16 --repeats 1   # quick look
    python benchmarks/embed_throughput.py --smoke      # smallest setting (CI): ~30 s

``--smoke`` runs every step at the smallest size: matrix multiplies up to 256^3, 2 cells of 200
genes (201 tokens), one repeat, and the memory check on 1,000 and 10,000 cells in chunks of
1,000; options given with it still apply.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from _common import matmul_gflops, parse_smoke, rss_kib
from scipy import sparse
from torch import nn

from cancergpt_scvi import CancerGPTModel
from cancergpt_scvi.model import cpu_has_native_bf16
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
    "batch_size": 2,
    "repeats": 1,
    "release_genes": 200,
    "matmul_max": 256,
    "memory_cells": [1_000, 10_000],
    "chunk_size": 1_000,
}
#: Binning of every path: deterministic, so all paths embed the same tokens.
BINNING = "deterministic"


def encoder_flops(n_tokens: int, embed_dim: int, ffn_dim: int, n_layers: int) -> float:
    """Multiply-add FLOPs (2 per MAC) of the full encoder forward for one cell of ``n_tokens``."""
    length, e, h = n_tokens, embed_dim, ffn_dim
    per_layer = (
        2 * length * e * 3 * e  # q, k, v projections
        + 2 * 2 * length * length * e  # q k^T and attention @ v
        + 2 * length * e * e  # output projection
        + 2 * 2 * length * e * h  # feed-forward
    )
    return float(n_layers * per_layer)


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


def write_counts_h5ad(
    path: Path, n_cells: int, n_genes: int, mean: float, chunk: int = 5_000, seed: int = 0
) -> Path:
    """An h5ad of sparse Poisson counts (genes as in :func:`count_cells`), written in chunks.

    One block of ``chunk`` cells is in memory at a time: the first is written by anndata, the
    others appended to its sparse ``X``, then ``obs`` is rewritten for every cell.
    """
    rng = np.random.default_rng(seed)
    gene_rates = rng.gamma(0.8, mean / 0.8, size=n_genes)

    def block(n: int) -> sparse.csr_matrix:
        rates = gene_rates * rng.gamma(4, 0.25, size=(n, 1))
        return sparse.csr_matrix(rng.poisson(rates).astype(np.float32))

    var = pd.DataFrame(index=[f"G{i + 3}" for i in range(n_genes)])
    first = block(min(chunk, n_cells))
    obs = pd.DataFrame(index=[f"c{i}" for i in range(first.shape[0])])
    ad.AnnData(first, obs=obs, var=var).write_h5ad(path)
    with h5py.File(path, "r+") as f:
        x = ad.io.sparse_dataset(f["X"])
        for start in range(first.shape[0], n_cells, chunk):
            x.append(block(min(chunk, n_cells - start)))
        del f["obs"]
        ad.io.write_elem(f, "obs", pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]))
    return path


def authors_encoder(module) -> nn.TransformerEncoder:
    """``torch.nn.TransformerEncoder`` (post-norm, ReLU) holding ``module.encoder``'s weights."""
    ours = module.encoder
    first = ours.layers[0]
    layer = nn.TransformerEncoderLayer(
        d_model=module.embed_dim,
        nhead=first.self_attn.n_heads,
        dim_feedforward=first.linear1.out_features,
        dropout=first.dropout.p,
        batch_first=True,
        norm_first=False,
    )
    reference = nn.TransformerEncoder(layer, num_layers=len(ours.layers))
    reference.load_state_dict(ours.state_dict(), strict=True)
    return reference.eval()


def authors_embed(module, reference, x: sparse.csr_matrix, batch_size: int) -> np.ndarray:
    """L2-normalised ``<cls>`` outputs of the authors'-style path, tokenisation included."""
    module.eval()
    chunks = []
    with torch.inference_mode():
        for b in range(0, x.shape[0], batch_size):
            dense = torch.from_numpy(x[b : b + batch_size].toarray())
            tokens = module.tokenize(dense, binning=BINNING)
            h = module.gene_encoder(tokens.gene_ids) + module.value_encoder(tokens.values)
            out = reference(h, src_key_padding_mask=tokens.padding_mask)
            chunks.append(F.normalize(out[:, 0].float(), dim=-1).numpy())
    return np.concatenate(chunks)


@contextlib.contextmanager
def swapped_encoder(module, encoder):
    """``module.encoder`` replaced by ``encoder`` inside the block."""
    original = module.encoder
    module.encoder = encoder
    try:
        yield
    finally:
        module.encoder = original


def best_time(run, warm_up, repeats: int) -> tuple[float, np.ndarray]:
    """Best-of-``repeats`` seconds of ``run()`` after one ``warm_up()``, and its last result."""
    warm_up()
    best, result = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest per-cell cosine of two sets of embeddings (L2-normalised again to be sure)."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.min(np.sum(a.astype(np.float64) * b, axis=1)))


def memory_child(path: str, n_genes: int, chunk_size: int, batch_size: int) -> None:
    """Embed the backed h5ad at ``path`` with a ``cpu-small`` model; print peak RSS as JSON."""
    logging.getLogger("scvi").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    cells = count_cells(256, n_genes, mean=0.2, seed=2)
    CancerGPTModel.setup_anndata(cells)
    model = CancerGPTModel(cells, preset="cpu-small")
    before, _ = rss_kib()
    backed = ad.read_h5ad(path, backed="r")
    start = time.perf_counter()
    z = model.get_latent_representation(
        backed, chunk_size=chunk_size, batch_size=batch_size, progress_bar=False
    )
    seconds = time.perf_counter() - start
    _, peak = rss_kib()
    print(
        json.dumps(
            {"cells": int(z.shape[0]), "rss_before_kib": before, "peak_kib": peak, "s": seconds}
        )
    )


def measure_memory(
    n_cells: int, folder: Path, n_genes: int, chunk_size: int, batch_size: int
) -> dict:
    """Write ``n_cells`` to an h5ad in ``folder``, embed it in a subprocess, its peak RSS."""
    path = write_counts_h5ad(folder / f"cells_{n_cells}.h5ad", n_cells, n_genes, mean=0.2)
    command = [
        sys.executable,
        __file__,
        "--memory-child",
        str(path),
        "--memory-genes",
        str(n_genes),
        "--chunk-size",
        str(chunk_size),
        "--memory-batch-size",
        str(batch_size),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"memory child for {n_cells} cells failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    with h5py.File(path, "r") as f:
        nnz = f["X"]["data"].shape[0]
    path.unlink()
    return {**result, "nnz_per_cell": nnz / n_cells}


def verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=64, help="cells per timing (every path)")
    parser.add_argument("--batch-size", type=int, default=16, help="cells per forward pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--release-genes", type=int, default=3000, help="genes of the release-checkpoint cells"
    )
    parser.add_argument("--matmul-max", type=int, default=2048, help="largest matmul side")
    parser.add_argument(
        "--memory-cells",
        type=int,
        nargs=2,
        default=[10_000, 100_000],
        help="the two cell counts of the memory check",
    )
    parser.add_argument("--memory-genes", type=int, default=2000, help="genes of the h5ad files")
    parser.add_argument("--chunk-size", type=int, default=10_000, help="memory check's chunks")
    parser.add_argument("--memory-batch-size", type=int, default=64)
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parse_smoke(parser, SMOKE)
    if args.memory_child:  # launched with explicit sizes, never with --smoke
        memory_child(args.memory_child, args.memory_genes, args.chunk_size, args.memory_batch_size)
        return
    logging.getLogger("scvi").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    native_bf16 = cpu_has_native_bf16()
    began = time.perf_counter()

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"native bf16 kernels: {native_bf16}, "
        f"quantized engine: {torch.backends.quantized.engine}"
    )
    print(f"load average at start (1, 5, 15 min): {os.getloadavg()}")
    peak, size = matmul_gflops(torch.float32, max_n=args.matmul_max)
    print(f"plain matmul ({size}^3 torch.mm) fp32: {peak:.1f} GFLOP/s")
    bf16_peak, size = matmul_gflops(torch.bfloat16, max_n=args.matmul_max)
    print(f"plain matmul ({size}^3 torch.mm) bf16: {bf16_peak:.1f} GFLOP/s (for reference)")

    with tempfile.TemporaryDirectory() as tmp:
        folder = write_release_folder(Path(tmp) / "assets")
        # 3,000 vocabulary genes: 1,199 become tokens, so every cell has 1,200 tokens;
        # 256 cells for a stable gene selection; the timings embed the first --cells of them
        adata = count_cells(max(args.cells, 256), args.release_genes, mean=2.0)
        model = CancerGPTModel.load_pretrained(folder, adata, device="cpu")
    module = model.module
    cells = np.arange(args.cells)
    warm = cells[: args.batch_size]
    x = sparse.csr_matrix(model.adata.X[: args.cells])
    with torch.inference_mode():
        tokens = module.tokenize(torch.from_numpy(x.toarray()), binning=BINNING)
    lengths = (~tokens.padding_mask).sum(dim=1).numpy()
    first = module.encoder.layers[0]
    shape = (module.embed_dim, first.linear1.out_features, len(module.encoder.layers))
    gflop_per_cell = float(np.mean([encoder_flops(int(n), *shape) for n in lengths])) / 1e9
    low, high = int(lengths.min()), int(lengths.max())
    n_tokens = str(low) if low == high else f"{low}-{high}"
    print(
        f"{args.cells} cells, {n_tokens} tokens each, {gflop_per_cell:.2f} GFLOP per cell "
        f"(full forward); batch size {args.batch_size}, best of {args.repeats} after a warm-up"
    )

    def ours(precision: str, indices=cells):
        return lambda: model.get_latent_representation(
            indices=indices,
            batch_size=args.batch_size,
            precision=precision,
            binning=BINNING,
            progress_bar=False,
        )

    rows, embeddings = [], {}

    def record(path: str, precision: str, seconds: float, z: np.ndarray) -> None:
        embeddings[(path, precision)] = z
        rows.append({"path": path, "precision": precision, "seconds": seconds})
        print(f"  {path} {precision}: {args.cells / seconds:.3g} cells/s", flush=True)

    reference = authors_encoder(module)
    authors_path = "authors'-style nn.TransformerEncoder"
    seconds, z = best_time(
        lambda: authors_embed(module, reference, x, args.batch_size),
        lambda: authors_embed(module, reference, x[: args.batch_size], args.batch_size),
        args.repeats,
    )
    record(authors_path, "fp32", seconds, z)
    ours_path = "ours get_latent_representation"
    seconds, z = best_time(ours("fp32"), ours("fp32", warm), args.repeats)
    record(ours_path, "fp32", seconds, z)

    quantised = torch.ao.quantization.quantize_dynamic(
        copy.deepcopy(module).encoder, {nn.Linear}, dtype=torch.qint8
    )
    int8_path = "ours + quantize_dynamic (not shipped)"
    with swapped_encoder(module, quantised):
        seconds, z = best_time(ours("fp32"), ours("fp32", warm), args.repeats)
    record(int8_path, "int8", seconds, z)
    del quantised

    if native_bf16:
        seconds, z = best_time(ours("bf16"), ours("bf16", warm), args.repeats)
        record(ours_path, "bf16", seconds, z)
    else:
        print("  bf16 not measured: this CPU has no native bfloat16 arithmetic")

    fp32 = embeddings[(ours_path, "fp32")]
    table = pd.DataFrame(rows)
    table.insert(2, "tokens", n_tokens)
    table["cells/s"] = args.cells / table["seconds"]
    table["effective GFLOP/s"] = table["cells/s"] * gflop_per_cell
    table["fraction of fp32 matmul"] = table["effective GFLOP/s"] / peak
    table["speed-up vs authors'"] = table["cells/s"] / table.loc[0, "cells/s"]
    table["min cosine vs fp32"] = [
        "reference" if key == (ours_path, "fp32") else f"{min_cosine(embeddings[key], fp32):.7f}"
        for key in zip(table["path"], table["precision"], strict=True)
    ]
    table = table.drop(columns="seconds")
    with pd.option_context(
        "display.width", 250, "display.max_columns", 20, "display.float_format", "{:.3g}".format
    ):
        print(table.to_string(index=False))
    exact = min_cosine(embeddings[(authors_path, "fp32")], fp32)
    print(
        f"ours fp32 vs authors'-style path, per-cell cosine: min {exact:.7f} "
        f"(required >= 0.99999): {verdict(exact >= 0.99999)}"
    )
    print(
        f"load average after the timings (1, 5, 15 min): {os.getloadavg()}; "
        f"{time.perf_counter() - began:.0f} s so far"
    )

    memory = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.memory_cells:
            memory[n] = measure_memory(
                n, Path(tmp), args.memory_genes, args.chunk_size, args.memory_batch_size
            )
            m = memory[n]
            print(
                f"peak RSS embedding {n:,} cells from a backed h5ad ({args.memory_genes:,} genes, "
                f"{m['nnz_per_cell']:.0f} non-zeros per cell, cpu-small, chunk_size="
                f"{args.chunk_size:,}, batch_size={args.memory_batch_size}): "
                f"{m['peak_kib'] / 1024:.0f} MiB (after imports and model set-up: "
                f"{m['rss_before_kib'] / 1024:.0f} MiB; {n / m['s']:.0f} cells/s)",
                flush=True,
            )
    small, large = args.memory_cells
    rss_ratio = memory[large]["peak_kib"] / memory[small]["peak_kib"]
    print(f"peak RSS ratio {large:,} / {small:,} cells: {rss_ratio:.3f}")

    by_key = {(r["path"], r["precision"]): r for r in table.to_dict("records")}
    speed = by_key[(ours_path, "fp32")]
    speed_up = speed["speed-up vs authors'"]
    int8 = by_key[(int8_path, "int8")]
    int8_ratio = int8["cells/s"] / speed["cells/s"]
    int8_cos = float(int8["min cosine vs fp32"])
    print("acceptance (issue 20):")
    print(f"  fp32 >= 4.5x authors' path: {speed_up:.2f}x: {verdict(speed_up >= 4.5)}")
    fraction = speed["fraction of fp32 matmul"]
    print(
        f"  fp32 effective rate >= 65% of matmul: {fraction:.0%} "
        f"({speed['effective GFLOP/s']:.1f} of {peak:.1f} GFLOP/s): {verdict(fraction >= 0.65)}"
    )
    int8_ok = int8_ratio >= 1.3 and int8_cos >= 0.998
    print(
        f"  int8 >= 1.3x fp32 at cosine >= 0.998 (else not shipped): {int8_ratio:.2f}x at "
        f"cosine {int8_cos:.5f}: {verdict(int8_ok)}" + ("" if int8_ok else " (not shipped)")
    )
    if native_bf16:
        bf16 = by_key[(ours_path, "bf16")]
        bf16_ratio = bf16["cells/s"] / speed["cells/s"]
        bf16_cos = float(bf16["min cosine vs fp32"])
        print(
            f"  bf16 >= 1.8x fp32 at cosine >= 0.999 (where native bf16): {bf16_ratio:.2f}x at "
            f"cosine {bf16_cos:.5f}: {verdict(bf16_ratio >= 1.8 and bf16_cos >= 0.999)}"
        )
    else:
        print("  bf16 >= 1.8x fp32 at cosine >= 0.999 (where native bf16): no native bf16 here")
    print(
        f"  peak RSS {large // 1000}k within 1.2x of {small // 1000}k: {rss_ratio:.3f}x: "
        f"{verdict(rss_ratio <= 1.2)}"
    )
    print(
        f"load average at end (1, 5, 15 min): {os.getloadavg()}; "
        f"{time.perf_counter() - began:.0f} s in all (after imports)"
    )


if __name__ == "__main__":
    main()
