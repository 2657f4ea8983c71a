"""Pretraining over an on-disk corpus: peak memory, cells/s and GFLOP/s at two corpus sizes.

Writes simulated corpora of 10 h5ad studies each (different gene subsets and tissues per
study; 2,000-gene space), then, for each size, pretrains in a fresh process for a fixed number
of steps through ``H5adCorpus`` + ``CorpusDataModule`` (tissue/technology oversampling from
``obs``, expression read a batch at a time) and reports:

* peak resident memory of that process (``VmHWM``), which should not grow with the corpus;
* training cells/s (after warm-up steps; data reading, binning, forward, backward, AdamW);
* achieved training GFLOP/s: 3x the forward FLOPs (counted by ``torch.utils.flop_counter`` on
  training batches) times cells/s;
* the embedding path (``get_latent_representation`` on cells in memory): cells/s and GFLOP/s
  of its forward;
* the machine's ``torch.mm`` GFLOP/s with the same number of threads.

Timings on a shared machine are noisy: the load average is printed with them.

Usage (from the repository root)::

    python benchmarks/pretrain_scale.py                       # 50,000 and 200,000 cells
    python benchmarks/pretrain_scale.py --sizes 20000 --steps 20   # quick look
    python benchmarks/pretrain_scale.py --sizes 200000 --preset release --batch-size 8 --steps 6
    python benchmarks/pretrain_scale.py --smoke          # smallest setting (CI): seconds

``--smoke`` runs every step at the smallest size: one corpus of 400 cells in 2 files of 200
genes, written to a temporary folder (unless ``--data-dir`` is given), 4 training steps of 16
cells (1 of warm-up), 32 cells embedded and a 256^3 matrix multiply; options given with it still
apply.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import markdown_table, matmul_gflops, parse_smoke, rss_kib

SCRIPT = Path(__file__).resolve()
#: Defaults of ``--smoke``: the smallest setting, for CI (``data_dir`` None: a temporary folder).
SMOKE = {
    "sizes": [400],
    "files": 2,
    "n_genes": 200,
    "batch_size": 16,
    "steps": 4,
    "warmup": 1,
    "embed_cells": 32,
    "matmul_size": 256,
    "data_dir": None,
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--n-genes", type=int, default=2000)
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=60, help="training steps per size")
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the timing")
    parser.add_argument("--embed-cells", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "cancergpt_pretrain_scale"
    )
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the matmul")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    return parse_smoke(parser, SMOKE, argv, scratch="data_dir")


# -- parent: write corpora, run one measuring process per size ---------------------------------
def ensure_corpus(folder: Path, n_cells: int, n_files: int, n_genes: int) -> None:
    """Write the simulated corpus once (a marker file says it is complete)."""
    marker = folder / "complete.json"
    if marker.is_file():
        return
    from cancergpt_scvi.datasets import write_simulated_corpus

    start = time.perf_counter()
    write_simulated_corpus(
        folder, n_files=n_files, n_cells_per_file=n_cells // n_files, n_genes=n_genes, seed=0
    )
    marker.write_text(json.dumps({"n_cells": n_cells, "seconds": time.perf_counter() - start}))


def main() -> None:
    args = parse_args()
    if args.child is not None:
        print("RESULT " + json.dumps(measure(args)), flush=True)
        return
    rows = []
    for size in args.sizes:
        folder = args.data_dir / f"{size}_{args.files}files_{args.n_genes}genes"
        ensure_corpus(folder, size, args.files, args.n_genes)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        cmd = [sys.executable, str(SCRIPT), "--child", str(folder), *sys.argv[1:]]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if out.returncode or not lines:
            sys.stderr.write(out.stderr[-4000:])
            raise SystemExit(f"measuring process failed for {size} cells")
        rows.append(json.loads(lines[-1][len("RESULT ") :]))
    report(rows, args)


def report(rows: list[dict], args: argparse.Namespace) -> None:
    import pandas as pd

    table = pd.DataFrame(rows).set_index("corpus_cells")
    shown = {
        "files": "files",
        "peak_rss_gib": "peak RSS (GiB)",
        "train_cells_per_s": "train cells/s",
        "train_gflops": "train GFLOP/s",
        "embed_cells_per_s": "embed cells/s",
        "embed_gflops": "embed GFLOP/s",
        "train_over_embed": "train / embed GFLOP/s",
        "matmul_gflops": "matmul GFLOP/s",
        "fwd_gflop_per_cell": "fwd GFLOP/cell (train)",
        "load_avg_1min": "load (1 min)",
    }
    print(
        f"\npreset={args.preset} batch={args.batch_size} steps={args.steps} "
        f"(timed {args.steps - args.warmup}) threads={args.threads}"
    )
    print(markdown_table(table[list(shown)].rename(columns=shown).round(3), float_format="g"))
    rss = table["peak_rss_gib"]
    print(
        f"\npeak RSS max {rss.max():.2f} GiB (target < 3 GiB); spread across sizes "
        f"{rss.max() - rss.min():.3f} GiB"
    )
    ratio = table["train_over_embed"]
    print(f"training / embedding GFLOP/s: {', '.join(f'{r:.2f}' for r in ratio)} (target >= 0.5)")


# -- child: one measurement -------------------------------------------------------------------
def measure(args: argparse.Namespace) -> dict:
    import numpy as np
    import scvi
    import torch
    from lightning.pytorch.callbacks import Callback
    from torch.utils.flop_counter import FlopCounterMode

    from cancergpt_scvi import CancerGPTModel
    from cancergpt_scvi.corpus import CorpusDataModule, H5adCorpus

    torch.set_num_threads(args.threads)
    scvi.settings.seed = 0
    files = sorted(args.child.glob("*.h5ad"))
    corpus = H5adCorpus(files, obs_keys=["technology", "tissue"])
    adata = corpus.reference_adata(n_cells=256)
    CancerGPTModel.setup_anndata(
        adata, batch_key="study", technology_key="technology", tissue_key="tissue"
    )
    model = CancerGPTModel(adata, vocab=corpus.vocab, preset=args.preset)
    datamodule = CorpusDataModule(corpus, model.adata_manager, batch_size=args.batch_size)

    class StepTimer(Callback):
        def __init__(self, warmup):
            self.warmup, self.start, self.end, self.n = warmup, None, None, 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == self.warmup:
                self.start = time.perf_counter()
            elif trainer.global_step > self.warmup:
                self.end, self.n = time.perf_counter(), self.n + batch["X"].shape[0]

    timer = StepTimer(args.warmup)
    load_before = os.getloadavg()[0]
    model.train(
        max_epochs=1,
        max_steps=args.steps,
        datamodule=datamodule,
        callbacks=[timer],
        enable_progress_bar=False,
        check_val_every_n_epoch=None,
    )
    train_cells_per_s = timer.n / (timer.end - timer.start)

    # forward FLOPs of training batches (train mode: masking, decoders, discriminators)
    module = model.module
    module.train()
    loader = iter(datamodule.train_dataloader())
    flops, cells = 0, 0
    for _ in range(3):
        batch = next(loader)
        with FlopCounterMode(display=False) as counter:
            module(batch)
        flops += counter.get_total_flops()
        cells += batch["X"].shape[0]
    fwd_per_cell = flops / cells

    # the embedding path on cells held in memory
    cells_adata = corpus.reference_adata(n_cells=args.embed_cells, seed=1)
    model.get_latent_representation(cells_adata[:8].copy(), progress_bar=False)  # warm-up
    best = np.inf
    for _ in range(2):
        start = time.perf_counter()
        model.get_latent_representation(cells_adata, batch_size=64, progress_bar=False)
        best = min(best, time.perf_counter() - start)
    embed_cells_per_s = cells_adata.n_obs / best
    module.eval()
    x = torch.as_tensor(cells_adata.X[:64].toarray())
    with FlopCounterMode(display=False) as counter:
        module.embed(x)
    embed_per_cell = counter.get_total_flops() / x.shape[0]

    # one warm-up product at --matmul-size, then the best of 5
    mm_gflops, _ = matmul_gflops(
        torch.float32, max_n=args.matmul_size, repeats=5, min_n=args.matmul_size
    )
    peak = rss_kib()[1] / 2**20  # VmHWM, KiB -> GiB: ru_maxrss would count the parent's memory
    train_gflops = 3 * fwd_per_cell * train_cells_per_s / 1e9
    embed_gflops = embed_per_cell * embed_cells_per_s / 1e9
    return {
        "corpus_cells": corpus.n_obs,
        "files": len(files),
        "genes": corpus.n_vars,
        "peak_rss_gib": peak,
        "train_cells_per_s": train_cells_per_s,
        "train_gflops": train_gflops,
        "embed_cells_per_s": embed_cells_per_s,
        "embed_gflops": embed_gflops,
        "train_over_embed": train_gflops / embed_gflops,
        "matmul_gflops": mm_gflops,
        "fwd_gflop_per_cell": fwd_per_cell / 1e9,
        "embed_gflop_per_cell": embed_per_cell / 1e9,
        "load_avg_1min": (load_before + os.getloadavg()[0]) / 2,
    }


if __name__ == "__main__":
    main()
