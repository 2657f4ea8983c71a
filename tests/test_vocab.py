import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cancergpt_scvi.data import GeneVocab


def test_special_tokens_come_first_and_round_trip(tmp_path):
    vocab = GeneVocab.from_genes(["TP53", "MYC", "TP53"])
    assert (vocab["<cls>"], vocab["<pad>"], vocab["<eoc>"], vocab["TP53"], vocab["MYC"]) == (
        0,
        1,
        2,
        3,
        4,
    )
    vocab.to_json(tmp_path / "vocab.json")
    assert GeneVocab.from_json(tmp_path / "vocab.json") == vocab


def test_release_vocabulary_loads(release_vocab_path):
    vocab = GeneVocab.from_json(release_vocab_path)
    assert len(vocab) == 28725
    assert vocab.cls_id == 0 and vocab.pad_id == 1
    assert vocab["IGFBP7"] == 3


def test_match_by_var_names_and_by_symbol_column():
    vocab = GeneVocab.from_genes([f"G{i}" for i in range(50)])
    adata = ad.AnnData(
        np.zeros((2, 40), dtype=np.float32),
        var=pd.DataFrame(
            {"symbol": [f"G{i}" for i in range(40)]}, index=[f"ENSG{i:011d}" for i in range(40)]
        ),
    )
    ids = vocab.match(adata, gene_symbols_key="symbol")
    assert (ids == np.arange(3, 43)).all()
    with pytest.raises(ValueError, match="gene_symbols_key") as err:
        vocab.match(adata)  # Ensembl ids against a symbol vocabulary
    assert "ENSG00000000000" in str(err.value)


def test_vocab_missing_special_tokens_is_refused(tmp_path):
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"TP53": 0}))
    with pytest.raises(ValueError, match="special tokens"):
        GeneVocab.from_json(path)
