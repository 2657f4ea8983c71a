import pytest
import torch

from cancergpt_scvi.data import tokenize

CLS, PAD = 0, 1


def test_fixed_selection_keeps_every_present_gene_in_order():
    bins = torch.tensor([[0.0, 3.0, 1.0, 5.0]])
    gene_ids = torch.tensor([10, 11, PAD, 13])
    tok = tokenize(bins, gene_ids, CLS, PAD, max_seq_len=8, selection="fixed")
    assert tok.gene_ids.tolist() == [[CLS, 10, 11, 13]]
    assert tok.values.tolist() == [[-2.0, 0.0, 3.0, 5.0]]
    assert not tok.padding_mask.any()


def test_fixed_selection_refuses_too_many_genes():
    with pytest.raises(ValueError, match="highly variable"):
        tokenize(torch.ones(1, 10), torch.arange(3, 13), CLS, PAD, max_seq_len=5, selection="fixed")


def test_expressed_selection_pads_and_keeps_top_genes_deterministically():
    bins = torch.tensor([[0.0, 2.0, 9.0, 4.0, 1.0], [0.0, 0.0, 7.0, 0.0, 0.0]])
    gene_ids = torch.arange(3, 8)
    tok = tokenize(bins, gene_ids, CLS, PAD, max_seq_len=4, selection="expressed")
    # three slots after <cls>: the three highest bins of cell 0, in input order
    assert tok.gene_ids[0].tolist() == [CLS, 4, 5, 6]
    assert tok.gene_ids[1].tolist() == [CLS, 5, PAD, PAD]
    assert tok.padding_mask[1].tolist() == [False, False, True, True]
    assert tok.gene_positions.sum().item() == 4


def test_random_selection_samples_only_expressed_genes():
    torch.manual_seed(0)
    bins = (torch.rand(50, 200) > 0.5).float() * 3
    gene_ids = torch.arange(3, 203)
    tok = tokenize(bins, gene_ids, CLS, PAD, 32, selection="expressed", random=True)
    values = tok.values[:, 1:]
    assert (values[~tok.padding_mask[:, 1:]] > 0).all()
    assert tok.gene_ids.shape == (50, 32)
