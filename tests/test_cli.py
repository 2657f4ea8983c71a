import anndata as ad
import numpy as np

from cancergpt_scvi.cli import main


def test_embed_command_writes_the_embedding_and_never_clobbers(trained_model, tmp_path, capsys):
    model_dir = tmp_path / "model"
    trained_model.save(model_dir, overwrite=True)
    cells = trained_model.adata[:40].copy()
    cells.write_h5ad(tmp_path / "in.h5ad")
    out = tmp_path / "out.h5ad"

    assert (
        main(["embed", str(tmp_path / "in.h5ad"), "--model", str(model_dir), "--out", str(out)])
        == 0
    )
    written = ad.read_h5ad(out)
    expected = trained_model.get_latent_representation(indices=np.arange(40), progress_bar=False)
    np.testing.assert_allclose(written.obsm["X_cancergpt"], expected, atol=1e-6)

    before = out.read_bytes()
    code = main(["embed", str(tmp_path / "in.h5ad"), "--model", str(model_dir), "--out", str(out)])
    assert code == 2 and "overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before  # the existing output is untouched

    code = main(["embed", str(tmp_path / "in.h5ad"), "--model", str(tmp_path), "--out", str(out)])
    assert code == 2 and "model.pt" in capsys.readouterr().err


def test_demo_command_writes_its_outputs(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--n-cells", "200", "--n-genes", "200", "--max-epochs", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    names = ["training_curves.png", "metrics.csv", "atlas_embedded.h5ad"]
    names += [f"umap_{c}.png" for c in ("tissue", "technology", "patient", "cell_state")]
    for name in names:
        assert (out / name).stat().st_size > 1000, name
        assert str(out / name) in printed
    assert (out / "model" / "model.pt").is_file()
    embedded = ad.read_h5ad(out / "atlas_embedded.h5ad")
    assert {"X_cancergpt", "X_umap"} <= set(embedded.obsm)
