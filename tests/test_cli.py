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
