"""Fidelity of ``CancerGPTModel.load_pretrained`` on an scGPT folder to scGPT's own embedding.

With a copy of the scGPT repository (``--scgpt-repo``, the folder holding ``scgpt/``):

1. scGPT's own ``TransformerModel`` (``scgpt/model/model.py``, its own random initialisation,
   torch attention: flash-attn is not installed here) is built as scGPT's ``embed_data``
   builds it, and its ``state_dict()`` is written with ``args.json`` and ``vocab.json`` as
   an scGPT folder;
2. cells with distinct positive values (no ties, so scGPT's random tie spreading draws
   nothing) and fewer expressed genes than ``max_seq_len - 1`` (so scGPT's random subset
   draws nothing either), some of their genes outside the vocabulary, are embedded
3. by scGPT's ``get_batch_cell_embeddings`` (``scgpt/tasks/cell_emb.py``, its own
   ``DataCollator`` and binning), after the steps of ``embed_data`` that precede it: genes
   matched by name, the others dropped, the weights loaded (strictly);
4. and by ``CancerGPTModel.load_pretrained(folder, adata).get_latent_representation()``,
   on CPU; the per-cell cosine of the two (target: >= 0.999 for every cell) is printed with
   the commit of the scGPT copy and, for scale, how close unrelated cells come: the cosine
   and distance of each cell to the next one, and the per-cell cosine of the cell-specific
   parts (each embedding minus scGPT's mean over cells; target >= 0.999 too). A random
   encoder puts all cells close together, so the raw cosine alone says little.

scGPT's package ``__init__`` imports what is not installed here (torchtext through its
tokenizer, wandb-era trainers); so only the modules of the path are imported from the copy,
``scgpt/model/model.py`` (with ``flash_attn_compat``, ``dsbn``, ``grad_reverse``),
``scgpt/preprocess.py``, ``scgpt/data_collator.py`` and ``scgpt/tasks/cell_emb.py``, under
stand-in ``scgpt``, ``scgpt.model``, ``scgpt.tasks``, ``scgpt.tokenizer`` and ``scgpt.utils``
packages that hold nothing but scGPT's logger and the names ``cell_emb.py`` imports (its
``GeneVocab`` and ``load_pretrained`` are not called on this path: a ``{token: id}`` dict
serves as the vocabulary, and the weights are loaded with ``load_state_dict``).

Run::

    git clone https://github.com/bowang-lab/scGPT /tmp/scgpt_src
    python benchmarks/scgpt_fidelity.py --scgpt-repo /tmp/scgpt_src
    python benchmarks/scgpt_fidelity.py --smoke                         # CI, no scGPT copy

``--smoke`` without ``--scgpt-repo`` cannot measure fidelity to scGPT: it writes an
scGPT-layout folder with this package's own encoder under scGPT's key names (flash-attention
spelling ``self_attn.Wqkv``) and checks the pipeline end to end (the folder loads, every
token is a non-zero vocabulary gene, embeddings are unit vectors and repeat with the same seed).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import subprocess
import sys
import tempfile
import types
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import torch
from _common import parse_smoke

from cancergpt_scvi import CancerGPTModel
from cancergpt_scvi.nn import ContinuousValueEncoder, GeneEncoder, TransformerEncoder

#: The architecture of scGPT's whole-human model (args.json keys), scaled down by --small.
ARGS = {
    "embsize": 512,
    "nheads": 8,
    "d_hid": 512,
    "nlayers": 12,
    "n_layers_cls": 3,
    "dropout": 0.2,
    "pad_token": "<pad>",
    "pad_value": -2,
    "mask_value": -1,
    "n_bins": 51,
    "input_emb_style": "continuous",
    "max_seq_len": 1200,
}
SMALL = {"embsize": 64, "nheads": 4, "d_hid": 64, "nlayers": 2}
SMOKE = {"cells": 16, "genes": 300, "small": True}
DEFAULT_CELLS, DEFAULT_GENES = 64, 1500
TARGET = 0.999


def scgpt_modules(repo: Path) -> dict[str, types.ModuleType]:
    """scGPT's model, collator and cell-embedding modules, imported from a source copy."""
    src = repo / "scgpt"
    if not (src / "model" / "model.py").is_file():
        raise SystemExit(f"{repo} holds no scgpt/model/model.py: pass the scGPT repository root.")

    def package(name: str, path: Path | None, **attrs) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__path__ = [str(path)] if path else []
        module.__dict__.update(attrs)
        sys.modules[name] = module
        return module

    root = package("scgpt", src, logger=logging.getLogger("scGPT"))
    model_pkg = package("scgpt.model", src / "model")
    package("scgpt.tasks", src / "tasks")
    # cell_emb.py imports these names; the path measured here calls neither
    package("scgpt.tokenizer", None, GeneVocab=dict)
    package("scgpt.utils", None, load_pretrained=None)
    model = importlib.import_module("scgpt.model.model")
    model_pkg.TransformerModel = model.TransformerModel
    root.model = model_pkg
    collator = importlib.import_module("scgpt.data_collator")
    cell_emb = importlib.import_module("scgpt.tasks.cell_emb")
    return {"model": model, "data_collator": collator, "cell_emb": cell_emb}


def repo_commit(repo: Path) -> str:
    """The checkout's commit, or that of a ``COMMIT`` file next to an exported tree."""
    try:
        top = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
        )
    except OSError:
        top = None
    lines = top.stdout.split() if top is not None and top.returncode == 0 else []
    # only the repository's own checkout, not a repository that happens to contain the folder
    if len(lines) == 2 and Path(lines[0]).resolve() == repo:
        return lines[1]
    stamp = repo / "COMMIT"  # an exported tree (git archive) carries no .git: a stamp file
    return stamp.read_text().strip() if stamp.is_file() else "unknown (not a git checkout)"


def make_cells(
    n_cells: int, n_genes: int, n_vocab: int, seed: int, max_expressed: int | None = None
) -> ad.AnnData:
    """Tie-free cells: distinct positive values, 5-60% of the genes expressed (at most
    ``max_expressed``), genes G0.. in the vocabulary and X0.. outside it."""
    rng = np.random.default_rng(seed)
    names = [f"G{i}" for i in range(n_vocab)] + [f"X{i}" for i in range(n_genes - n_vocab)]
    x = np.zeros((n_cells, n_genes), dtype=np.float32)
    top = min(int(n_genes * 0.6), max_expressed or n_genes)
    for c in range(n_cells):
        k = int(rng.integers(max(2, n_genes // 20), top, endpoint=True))
        genes = rng.choice(n_genes, size=k, replace=False)
        # a lognormal draw of distinct values: ties have probability zero
        x[c, genes] = rng.lognormal(1.0, 1.0, size=k).astype(np.float32)
    order = rng.permutation(n_genes)
    adata = ad.AnnData(x[:, order])
    adata.var_names = np.array(names)[order]
    return adata


def write_folder(folder: Path, state: dict, args: dict, vocab: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "best_model.pt")
    (folder / "args.json").write_text(json.dumps(args))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    return folder


def ours(folder: Path, adata: ad.AnnData, seed: int) -> tuple[CancerGPTModel, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the MVC and expression decoders' keys are named
        model = CancerGPTModel.load_pretrained(folder, adata.copy(), device="cpu")
    z = model.get_latent_representation(seed=seed, progress_bar=False)
    return model, z


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def measure(repo: Path, args: argparse.Namespace, scratch: Path) -> bool:
    mods = scgpt_modules(repo)
    config = {**ARGS, **(SMALL if args.small else {})}
    n_vocab = int(args.genes * 0.9)
    # scGPT's vocabulary layout: genes, then the specials appended
    vocab = {f"G{i}": i for i in range(n_vocab)}
    for special in ("<pad>", "<cls>", "<eoc>"):
        vocab[special] = len(vocab)
    torch.manual_seed(args.seed)
    # as embed_data builds it; use_fast_transformer=False: torch attention (no flash-attn here)
    model = mods["model"].TransformerModel(
        ntoken=len(vocab),
        d_model=config["embsize"],
        nhead=config["nheads"],
        d_hid=config["d_hid"],
        nlayers=config["nlayers"],
        nlayers_cls=config["n_layers_cls"],
        n_cls=1,
        vocab=vocab,
        dropout=config["dropout"],
        pad_token=config["pad_token"],
        pad_value=config["pad_value"],
        do_mvc=True,
        do_dab=False,
        use_batch_labels=False,
        domain_spec_batchnorm=False,
        explicit_zero_prob=False,
        use_fast_transformer=False,
        fast_transformer_backend="flash",
        pre_norm=False,
    )
    if args.spread:  # other random weights, to probe other regimes of the arithmetic
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, args.spread)
    model.eval()
    folder = write_folder(scratch / "scgpt_folder", model.state_dict(), config, vocab)
    # fewer expressed genes than max_seq_len - 1: scGPT's random subset draws nothing
    adata = make_cells(args.cells, args.genes, n_vocab, args.seed, config["max_seq_len"] - 2)

    # scGPT: embed_data's steps before get_batch_cell_embeddings (gene_col="index")
    ids = np.array([vocab.get(g, -1) for g in adata.var_names])
    sub = adata[:, ids >= 0].copy()
    gene_ids = np.array([vocab[g] for g in sub.var_names], dtype=int)
    reloaded = mods["model"].TransformerModel(
        **{
            "ntoken": len(vocab),
            "d_model": config["embsize"],
            "nhead": config["nheads"],
            "d_hid": config["d_hid"],
            "nlayers": config["nlayers"],
            "nlayers_cls": config["n_layers_cls"],
            "n_cls": 1,
            "vocab": vocab,
            "dropout": config["dropout"],
            "pad_token": config["pad_token"],
            "pad_value": config["pad_value"],
            "do_mvc": True,
            "use_fast_transformer": False,
        }
    )
    reloaded.load_state_dict(torch.load(folder / "best_model.pt", weights_only=True))
    reloaded.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CUDA autocast and pin_memory on a CPU machine
        theirs = mods["cell_emb"].get_batch_cell_embeddings(
            sub,
            cell_embedding_mode="cls",
            model=reloaded,
            vocab=vocab,
            max_length=config["max_seq_len"],
            batch_size=64,
            model_configs=config,
            gene_ids=gene_ids,
            use_batch_labels=False,
        )
    loaded, z = ours(folder, adata, args.seed)
    n_expressed = (sub.X > 0).sum(axis=1)
    cos = cosine(z, theirs)
    unrelated = cosine(theirs, np.roll(theirs, 1, axis=0))
    print(f"scGPT commit: {repo_commit(repo)} ({repo})")
    print(
        f"model: scGPT TransformerModel, embsize={config['embsize']}, nlayers={config['nlayers']}, "
        f"nheads={config['nheads']}, d_hid={config['d_hid']}, vocabulary {len(vocab)}, "
        f"random weights ({f'normal std {args.spread}' if args.spread else 'scGPT init'}); "
        f"{loaded.pretrained_layout_} "
        "layout read"
    )
    print(
        f"cells: {args.cells}, genes {args.genes} ({n_vocab} in the vocabulary), expressed "
        f"vocabulary genes per cell {n_expressed.min()}-{n_expressed.max()} "
        f"(< max_seq_len - 1 = {config['max_seq_len'] - 1}), tie-free values"
    )
    print(
        f"per-cell cosine, ours vs scGPT's get_batch_cell_embeddings: min {cos.min():.6f}, "
        f"median {np.median(cos):.6f}; max |difference| {np.abs(z - theirs).max():.2e}"
    )
    # a random encoder puts all cells close together; the cell-specific part (each embedding
    # minus the mean over cells, scGPT's mean for both) shows that the cells' differences agree
    centre = theirs.mean(axis=0)
    cos_centred = cosine(z - centre, theirs - centre)
    unrelated_centred = cosine(theirs - centre, np.roll(theirs, 1, axis=0) - centre)
    print(
        f"for scale: cosine of each cell with another cell (scGPT's embedding): median "
        f"{np.median(unrelated):.4f}, max {unrelated.max():.4f}"
    )
    apart = np.linalg.norm(theirs - np.roll(theirs, 1, axis=0), axis=1)
    print(
        f"distances: ours to scGPT's at most {np.linalg.norm(z - theirs, axis=1).max():.2e}; "
        f"a cell to another cell (scGPT's embedding) median {np.median(apart):.2e}, "
        f"min {apart.min():.2e}"
    )
    print(
        f"cell-specific part (minus the mean over cells): per-cell cosine ours vs scGPT min "
        f"{cos_centred.min():.6f}; each cell with another cell: median "
        f"{np.median(unrelated_centred):.4f}"
    )
    ok = bool(cos.min() >= TARGET and cos_centred.min() >= TARGET)
    print(f"target per-cell cosine >= {TARGET}: {'met' if ok else 'missed'}")
    return ok


def scgpt_named(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This package's encoder state under scGPT's names, attention in flash-attn spelling."""
    out = {}
    for key, tensor in state.items():
        if key.startswith("gene_encoder."):
            key = "encoder." + key.removeprefix("gene_encoder.")
        elif key.startswith("encoder.layers."):
            key = "transformer_encoder." + key.removeprefix("encoder.")
            key = key.replace("self_attn.in_proj_", "self_attn.Wqkv.")
        out[key] = tensor
    return out


def smoke_pipeline(args: argparse.Namespace, scratch: Path) -> bool:
    """The pipeline end to end on a folder this package writes (no fidelity claim)."""
    config = {**ARGS, **SMALL, "max_seq_len": 64}
    n_vocab = int(args.genes * 0.9)
    vocab = {f"G{i}": i for i in range(n_vocab)}
    vocab["<pad>"] = len(vocab)  # <cls> and <eoc> appended on reading, as scGPT does
    torch.manual_seed(args.seed)
    dim = config["embsize"]
    modules = torch.nn.ModuleDict(
        {
            "gene_encoder": GeneEncoder(len(vocab) + 2, dim),
            "value_encoder": ContinuousValueEncoder(dim),
            "encoder": TransformerEncoder(
                dim, config["nlayers"], config["nheads"], config["d_hid"]
            ),
        }
    )
    state = scgpt_named(modules.state_dict())
    state["mvc_decoder.gene2query.weight"] = torch.zeros(dim, dim)  # a training head
    folder = write_folder(scratch / "smoke_folder", state, config, vocab)
    adata = make_cells(args.cells, args.genes, n_vocab, args.seed)
    model, z = ours(folder, adata, args.seed)
    again = model.get_latent_representation(seed=args.seed, progress_bar=False)
    tokens = model.module.tokenize(torch.as_tensor(adata.X), generator=torch.Generator())
    in_vocab = torch.as_tensor([g in vocab for g in adata.var_names])
    ok_tokens = True
    for c, row in enumerate(torch.as_tensor(adata.X)):
        expressed = set(model.module.gene_ids[(row > 0) & in_vocab].tolist())
        got = set(tokens.gene_ids[c, 1:][~tokens.padding_mask[c, 1:]].tolist())
        n_slots = config["max_seq_len"] - 1
        ok_tokens &= got <= expressed and len(got) == min(len(expressed), n_slots)
    checks = {
        "layout read as scGPT": model.pretrained_layout_ == "scGPT",
        "tokens are non-zero vocabulary genes (a subset of max_seq_len - 1 when more)": ok_tokens,
        "unit-norm, finite embeddings": bool(
            np.isfinite(z).all() and np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
        ),
        "same seed, same embedding": bool(np.array_equal(z, again)),
    }
    for name, ok in checks.items():
        print(f"{name}: {'ok' if ok else 'FAILED'}")
    print(
        "no --scgpt-repo: fidelity to scGPT is not measured (it needs a copy of the scGPT "
        "repository: python benchmarks/scgpt_fidelity.py --scgpt-repo PATH)"
    )
    return all(checks.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scgpt-repo", type=Path, help="root of a copy of bowang-lab/scGPT")
    parser.add_argument("--cells", type=int, default=DEFAULT_CELLS)
    parser.add_argument("--genes", type=int, default=DEFAULT_GENES, help="genes of the cells")
    parser.add_argument(
        "--small", action="store_true", help="a small model instead of the whole-human size"
    )
    parser.add_argument(
        "--spread",
        type=float,
        default=0.0,
        help="redraw the random weights with this std (default 0: scGPT's own initialisation)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scratch", type=Path, help="folder for the written checkpoint")
    args = parse_smoke(parser, {**SMOKE, "scratch": None}, scratch="scratch")
    logging.getLogger("scvi").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = args.scratch or Path(tmp)
        if args.scgpt_repo is not None:
            ok = measure(args.scgpt_repo.resolve(), args, scratch)
        elif args.smoke:
            ok = smoke_pipeline(args, scratch)
        else:
            parser.error("--scgpt-repo is needed to measure fidelity (or --smoke for CI).")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
