"""DDP training over an on-disk corpus, run by tests/test_pretrain_at_scale.py.

Launched once per rank by ``torchrun`` (``python -m torch.distributed.run --standalone
--nproc_per_node=2 tests/_ddp_worker.py CORPUS_DIR OUT_DIR``), as on a cluster; Lightning's
``strategy="ddp"`` joins the ranks (gloo on CPU). Every rank writes its final weights, the
corpus cells its training loader served, and the process group it trained in; then it trains
once more from an in-memory AnnData (scvi-tools' data splitter) and writes those weights.
"""

import json
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import scvi
import torch
from lightning.pytorch.callbacks import Callback
from torchdata.stateful_dataloader import StatefulDataLoader

from cancergpt_scvi import CancerGPTModel
from cancergpt_scvi.corpus import CorpusDataModule, H5adCorpus
from cancergpt_scvi.corpus._datamodule import CorpusDataset
from cancergpt_scvi.train import StepSeed

TINY = {"embed_dim": 32, "n_layers": 1, "n_heads": 2, "ffn_dim": 64, "max_seq_len": 64}


class RecordingDataset(CorpusDataset):
    """Remembers the corpus cells of every batch it serves."""

    served: ClassVar[list[np.ndarray]] = []

    def __getitem__(self, positions):
        self.served.append(self.indices[np.asarray(positions)])
        return super().__getitem__(positions)


class ProcessGroup(Callback):
    """Records the process group training runs in."""

    info: ClassVar[dict] = {}

    def on_train_start(self, trainer, pl_module):
        self.info.update(
            backend=torch.distributed.get_backend(),
            world_size=torch.distributed.get_world_size(),
            rank=torch.distributed.get_rank(),
        )


class RecordingDataModule(CorpusDataModule):
    def train_dataloader(self):
        dataset = RecordingDataset(self.corpus, self.train_indices, self.codes)
        sampler = self.train_sampler()
        return StatefulDataLoader(dataset, sampler=sampler, batch_size=None, **self.loader_kwargs)


def main(corpus_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    out = Path(out_dir)
    corpus = H5adCorpus(sorted(Path(corpus_dir).glob("*.h5ad")), obs_keys=["technology", "tissue"])
    adata = corpus.reference_adata(n_cells=64)
    CancerGPTModel.setup_anndata(
        adata, batch_key="study", technology_key="technology", tissue_key="tissue"
    )
    scvi.settings.seed = 0
    model = CancerGPTModel(adata, vocab=corpus.vocab, **TINY)
    datamodule = RecordingDataModule(corpus, model.adata_manager, batch_size=16, seed=1)
    ddp = {"accelerator": "cpu", "devices": 2, "strategy": "ddp", "enable_progress_bar": False}
    model.train(
        max_epochs=1,
        datamodule=datamodule,
        callbacks=[StepSeed(0), ProcessGroup()],
        check_val_every_n_epoch=None,
        **ddp,
    )
    rank = model.trainer.global_rank
    torch.save(model.module.state_dict(), out / f"weights{rank}.pt")
    np.save(out / f"served{rank}.npy", np.concatenate(RecordingDataset.served))
    info = {**ProcessGroup.info, "global_step": model.trainer.global_step}

    # the in-memory path: scvi-tools' data splitter with the oversampling sampler
    in_memory = corpus.reference_adata(n_cells=160, seed=2)
    CancerGPTModel.setup_anndata(
        in_memory, batch_key="study", technology_key="technology", tissue_key="tissue"
    )
    scvi.settings.seed = 0
    model = CancerGPTModel(in_memory, vocab=corpus.vocab, **TINY)
    model.train(max_epochs=1, batch_size=16, **ddp)  # the sampler's seed: rank 0's, shared
    torch.save(model.module.state_dict(), out / f"in_memory_weights{rank}.pt")
    info["in_memory_global_step"] = model.trainer.global_step
    (out / f"info{rank}.json").write_text(json.dumps(info))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
