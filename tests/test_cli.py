import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cancergpt_scvi.cli import main
from cancergpt_scvi.workflow import embed_file
from cancergpt_scvi.workflow._atomic_output import temporary_name, write_atomically
from tests.conftest import TINY, input_cells


def test_embed_command_writes_the_embedding_and_never_clobbers(trained_model, tmp_path, capsys):
    model_dir = tmp_path / "model"
    trained_model.save(model_dir, overwrite=True)
    cells = input_cells(trained_model, 40)
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
    args = ["demo", "--out", str(out), "--n-cells", "400", "--n-genes", "200", "--max-epochs", "1"]
    assert main([*args, "--scvi-epochs", "2"]) == 0
    printed = capsys.readouterr().out
    names = ["training_curves.png", "metrics.csv", "new_patients_scib.csv", "atlas_embedded.h5ad"]
    names += [f"umap_{c}.png" for c in ("tissue", "technology", "patient", "cell_state")]
    for name in names:
        assert (out / name).stat().st_size > 1000, name
        assert str(out / name) in printed
    assert (out / "model" / "model.pt").is_file()
    embedded = ad.read_h5ad(out / "atlas_embedded.h5ad")
    assert {"X_cancergpt", "X_umap"} <= set(embedded.obsm)
    # the table scores the held-out patients only, next to the baselines
    table = pd.read_csv(out / "new_patients_scib.csv", index_col=0)
    assert {"CancerGPT", "PCA", "scVI"} <= set(table.index)
    assert table.loc["CancerGPT", "Total"] == pytest.approx(
        0.6 * table.loc["CancerGPT", "Bio conservation"]
        + 0.4 * table.loc["CancerGPT", "Batch correction"]
    )
    held = embedded.obs["held_out"].to_numpy()
    assert 0 < held.sum() < len(held)
    pretrained_on = set(embedded.obs.loc[~held, "patient"])
    assert not pretrained_on & set(embedded.obs.loc[held, "patient"])


@pytest.fixture(scope="module")
def saved(trained_model, tmp_path_factory):
    """A saved model folder and an input file of 40 of its cells."""
    folder = tmp_path_factory.mktemp("cli")
    trained_model.save(folder / "model", overwrite=True)
    input_cells(trained_model, 40).write_h5ad(folder / "in.h5ad")
    return folder


def _embed(saved, out, *extra):
    return main(
        [
            "embed",
            str(saved / "in.h5ad"),
            "--model",
            str(saved / "model"),
            "--out",
            str(out),
            *extra,
        ]
    )


def _refusal(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("cancergpt-scvi embed: error: ") and err.count("\n") == 1, err
    return err


def test_embed_refuses_a_folder_as_output(saved, tmp_path, capsys):
    folder = tmp_path / "outdir"
    folder.mkdir()
    # used to end in an IsADirectoryError traceback and leave a complete outdir.partial
    assert _embed(saved, folder, "--overwrite") == 2
    err = _refusal(capsys)
    assert f"{folder} is a folder" in err and "embedded.h5ad" in err
    assert list(tmp_path.iterdir()) == [folder] and not list(folder.iterdir())
    assert _embed(saved, tmp_path / "missing" / "out.h5ad") == 2
    assert "does not exist; create it first" in _refusal(capsys)


def test_embed_refuses_non_h5ad_input_and_garbage_model(saved, tmp_path, capsys):
    text = tmp_path / "cells.h5ad"
    text.write_text("gene,cell\nEGFR,1\n")
    code = main(
        ["embed", str(text), "--model", str(saved / "model"), "--out", str(tmp_path / "o.h5ad")]
    )
    assert code == 2
    err = _refusal(capsys)
    assert f"{text} is not a readable .h5ad file" in err and "write_h5ad" in err

    bad = tmp_path / "bad_model"
    shutil.copytree(saved / "model", bad)
    (bad / "model.pt").write_bytes(b"\x80\x04garbage, not a saved model" * 10)
    code = main(
        ["embed", str(saved / "in.h5ad"), "--model", str(bad), "--out", str(tmp_path / "o.h5ad")]
    )
    assert code == 2
    err = _refusal(capsys)
    assert str(bad / "model.pt") in err and "CancerGPTModel.save" in err
    assert not (tmp_path / "o.h5ad").exists()


def test_embed_refuses_a_non_positive_batch_size(saved, tmp_path, capsys):
    for size in ("0", "-3", "ten"):
        with pytest.raises(SystemExit) as exit_:
            _embed(saved, tmp_path / "out.h5ad", "--batch-size", size)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "argument --batch-size" in err and "positive" in err and "Traceback" not in err
    assert not (tmp_path / "out.h5ad").exists()
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        embed_file(saved / "in.h5ad", saved / "model", tmp_path / "out.h5ad", batch_size=0)


def test_embed_refuses_to_replace_an_obsm_key_without_overwrite(saved, tmp_path, capsys):
    cells = ad.read_h5ad(saved / "in.h5ad")
    cells.obsm["X_cancergpt"] = np.zeros((cells.n_obs, 3), dtype=np.float32)
    cells.write_h5ad(tmp_path / "in.h5ad")
    args = ["embed", str(tmp_path / "in.h5ad"), "--model", str(saved / "model")]
    assert main([*args, "--out", str(tmp_path / "out.h5ad")]) == 2
    err = _refusal(capsys)
    assert "already has obsm['X_cancergpt']" in err and "--key" in err and "--overwrite" in err
    assert not (tmp_path / "out.h5ad").exists()
    assert main([*args, "--out", str(tmp_path / "new.h5ad"), "--key", "X_new"]) == 0
    new = ad.read_h5ad(tmp_path / "new.h5ad")
    assert not new.obsm["X_cancergpt"].any()  # the input's own key is kept
    assert main([*args, "--out", str(tmp_path / "out.h5ad"), "--overwrite"]) == 0
    replaced = ad.read_h5ad(tmp_path / "out.h5ad").obsm["X_cancergpt"]
    np.testing.assert_allclose(replaced, new.obsm["X_new"], atol=1e-6)


def test_embed_reads_the_expression_from_the_layer_option(saved, trained_model, tmp_path, capsys):
    cells = ad.read_h5ad(saved / "in.h5ad")
    cells.layers["counts"] = cells.X.copy()
    cells.X = cells.X * 0  # the model (set up on X) would see no expression here
    cells.write_h5ad(tmp_path / "in.h5ad")
    args = ["embed", str(tmp_path / "in.h5ad"), "--model", str(saved / "model")]
    assert main([*args, "--out", str(tmp_path / "out.h5ad"), "--layer", "counts"]) == 0
    expected = trained_model.get_latent_representation(indices=np.arange(40), progress_bar=False)
    written = ad.read_h5ad(tmp_path / "out.h5ad")
    np.testing.assert_allclose(written.obsm["X_cancergpt"], expected, atol=1e-6)
    assert "counts" in written.layers and not written.X.sum()  # the input is kept as it was

    assert main([*args, "--out", str(tmp_path / "o2.h5ad"), "--layer", "raw"]) == 2
    err = _refusal(capsys)
    assert "no layer 'raw'" in err and "(--layer)" in err and "layer=None" not in err


def test_embed_of_a_model_set_up_on_a_layer_says_the_cli_option(atlas, tmp_path, capsys):
    from cancergpt_scvi import CancerGPTModel

    adata = atlas[:100].copy()
    adata.layers["counts"] = adata.X.copy()
    CancerGPTModel.setup_anndata(adata, layer="counts")
    CancerGPTModel(adata, **TINY).save(tmp_path / "model")  # untrained weights suffice here
    adata[:20].copy().write_h5ad(tmp_path / "with_layer.h5ad")
    plain = adata[:20].copy()
    del plain.layers["counts"]
    plain.write_h5ad(tmp_path / "plain.h5ad")

    args = ["--model", str(tmp_path / "model")]
    assert (
        main(["embed", str(tmp_path / "plain.h5ad"), *args, "--out", str(tmp_path / "o.h5ad")]) == 2
    )
    err = _refusal(capsys)
    assert "no layer 'counts'" in err and "trained on layers['counts']" in err
    assert "(--layer)" in err and "layer=None" not in err
    # --layer X reads adata.X, the same counts here
    for name in ("plain", "with_layer"):
        out = tmp_path / f"{name}_out.h5ad"
        extra = ["--layer", "X"] if name == "plain" else []
        assert (
            main(["embed", str(tmp_path / f"{name}.h5ad"), *args, "--out", str(out), *extra]) == 0
        )
    np.testing.assert_allclose(
        ad.read_h5ad(tmp_path / "plain_out.h5ad").obsm["X_cancergpt"],
        ad.read_h5ad(tmp_path / "with_layer_out.h5ad").obsm["X_cancergpt"],
        atol=1e-6,
    )


def test_embed_killed_while_writing_leaves_nothing_a_later_run_keeps(saved, tmp_path, capsys):
    out = tmp_path / "out.h5ad"
    # a run killed with SIGKILL halfway through writing its output
    killed = textwrap.dedent(
        f"""
        import os, signal, anndata
        from cancergpt_scvi.cli import main

        def write_and_die(self, path, **kwargs):
            open(path, "wb").write(b"half an h5ad")
            os.kill(os.getpid(), signal.SIGKILL)

        anndata.AnnData.write_h5ad = write_and_die
        main(["embed", {str(saved / "in.h5ad")!r}, "--model", {str(saved / "model")!r},
              "--out", {str(out)!r}])
        """
    )
    proc = subprocess.run([sys.executable, "-c", killed], capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    stranded = [p.name for p in tmp_path.iterdir()]
    assert not out.exists() and len(stranded) == 1 and stranded[0].startswith(".out.h5ad.")
    # files of a live writer and files that are not temporaries of ours are left alone
    live = temporary_name(out, pid=os.getpid())
    live.write_bytes(b"being written")
    other = tmp_path / ".out.h5ad.notes.partial"
    other.write_bytes(b"the user's")

    assert _embed(saved, out) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, live.name, other.name])
    assert ad.read_h5ad(out).obsm["X_cancergpt"].shape == (40, TINY["embed_dim"])


def test_embed_failure_while_writing_leaves_no_file(saved, tmp_path, monkeypatch):
    out = tmp_path / "out.h5ad"

    def write_and_fail(self, path, **kwargs):
        open(path, "wb").write(b"half an h5ad")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", write_and_fail)
    with pytest.raises(OSError, match="No space left"):
        embed_file(saved / "in.h5ad", saved / "model", out)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("key", ["a/b", "a/", "."])
def test_embed_refuses_a_key_an_h5ad_cannot_store(saved, tmp_path, capsys, key):
    # "a/b" used to be written with exit 0 into a file anndata cannot read; "a/" read back as "a"
    assert _embed(saved, tmp_path / "out.h5ad", "--key", key) == 2
    err = _refusal(capsys)
    assert f"obsm key {key!r} cannot be stored" in err and "--key" in err
    assert not list(tmp_path.iterdir())


def _run_embed_script(saved, out: Path, patch: str, log: Path) -> subprocess.Popen:
    """Start ``cancergpt-scvi embed`` in a new Python with ``AnnData.write_h5ad`` patched."""
    script = textwrap.dedent(patch) + textwrap.dedent(
        f"""
        import sys
        from cancergpt_scvi.cli import main

        sys.exit(main(["embed", {str(saved / "in.h5ad")!r}, "--model",
                       {str(saved / "model")!r}, "--out", {str(out)!r}]))
        """
    )
    with open(log, "wb") as stderr:  # a file, not a pipe: a full pipe would block the run
        return subprocess.Popen([sys.executable, "-c", script], stderr=stderr)


def test_two_concurrent_embeds_to_one_output_publish_exactly_one(saved, tmp_path):
    barrier, folder = tmp_path / "barrier", tmp_path / "out"
    barrier.mkdir()
    folder.mkdir()
    out = folder / "out.h5ad"
    # both runs pass the early "exists" check, then wait for each other before writing
    wait_for_the_other = f"""
        import os, time, anndata
        from pathlib import Path

        write = anndata.AnnData.write_h5ad

        def write_with_the_other_run(self, path, **kwargs):
            barrier = Path({str(barrier)!r})
            (barrier / str(os.getpid())).touch()
            deadline = time.monotonic() + 120
            while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            write(self, path, **kwargs)

        anndata.AnnData.write_h5ad = write_with_the_other_run
        """
    logs = [tmp_path / f"run{i}.log" for i in range(2)]
    runs = [_run_embed_script(saved, out, wait_for_the_other, log) for log in logs]
    results = [
        (run.wait(timeout=300), log.read_text()) for run, log in zip(runs, logs, strict=True)
    ]
    assert len(list(barrier.iterdir())) == 2, results  # both got past the early check
    assert sorted(code for code, _ in results) == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert f"{out} exists: another run wrote it" in loser and "Traceback" not in loser
    assert [p.name for p in folder.iterdir()] == [out.name]  # no temporary is left
    assert ad.read_h5ad(out).obsm["X_cancergpt"].shape == (40, TINY["embed_dim"])


@pytest.mark.parametrize("link_fails", [False, True], ids=["hard-link", "no-hard-links"])
def test_publishing_never_replaces_an_output_without_overwrite(tmp_path, monkeypatch, link_fails):
    if link_fails:  # e.g. FAT or some network shares

        def no_link(src, dst, **kwargs):
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_link)
    out = tmp_path / "out.h5ad"
    write_atomically(lambda path: path.write_bytes(b"first"), out, overwrite=False)
    assert out.read_bytes() == b"first"
    with pytest.raises(FileExistsError, match="another run wrote it"):
        write_atomically(lambda path: path.write_bytes(b"second"), out, overwrite=False)
    assert out.read_bytes() == b"first"
    write_atomically(lambda path: path.write_bytes(b"third"), out, overwrite=True)
    assert out.read_bytes() == b"third"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_embed_stopped_by_a_signal_removes_its_temporary(saved, tmp_path):
    # SIGTERM used to kill the run and leave its temporary; a Ctrl-C lost in a finaliser
    # ("Exception ignored ... KeyboardInterrupt") used to let the run finish with exit 0
    cases = {"SIGTERM": (signal.SIGTERM, 143, False), "SIGINT": (signal.SIGINT, 130, True)}
    started = {}
    for name, (_, _, swallow) in cases.items():
        (tmp_path / name).mkdir()
        marker = tmp_path / f"{name}.writing"
        slow_write = f"""
            import time, anndata
            from pathlib import Path

            write = anndata.AnnData.write_h5ad

            def slow_write(self, path, **kwargs):
                open(path, "wb").write(b"half an h5ad")
                Path({str(marker)!r}).touch()
                if {swallow}:
                    try:
                        time.sleep(120)
                    except KeyboardInterrupt:
                        pass  # as in a finaliser: the interrupt is lost and the write goes on
                    write(self, path, **kwargs)
                else:
                    time.sleep(120)

            anndata.AnnData.write_h5ad = slow_write
            """
        log = tmp_path / f"{name}.log"
        run = _run_embed_script(saved, tmp_path / name / "out.h5ad", slow_write, log)
        started[name] = (run, marker, log)
    for name, (run, marker, log) in started.items():
        deadline = time.monotonic() + 240
        while not marker.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), log.read_text()[-2000:]
        assert len(list((tmp_path / name).iterdir())) == 1  # the temporary, being written
        run.send_signal(cases[name][0])
    for name, (run, _, log) in started.items():
        code, err = run.wait(timeout=120), log.read_text()
        assert code == cases[name][1], err[-2000:]
        assert f"stopped by {name}" in err and "was not written" in err and "Traceback" not in err
        assert not list((tmp_path / name).iterdir())  # neither output nor temporary


def test_embed_removes_the_temporaries_of_dead_writers_in_its_folder(saved, tmp_path):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its process id now names no process
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        dead = temporary_name(tmp_path / "earlier.h5ad", pid=finished.pid)
        live = temporary_name(tmp_path / "running.h5ad", pid=running.pid)
        ours = temporary_name(tmp_path / "mine.h5ad")  # this (live) process
        # another machine's writer in a shared folder: alive or not cannot be told from here
        remote = temporary_name(tmp_path / "remote.h5ad", pid=finished.pid, host="elsewhere")
        remote_old = temporary_name(tmp_path / "remote_old.h5ad", host="elsewhere")
        for tmp in (dead, live, ours, remote, remote_old):
            tmp.write_bytes(b"part of an h5ad")
        two_days_ago = time.time() - 2 * 24 * 3600
        os.utime(remote_old, (two_days_ago, two_days_ago))

        assert _embed(saved, tmp_path / "out.h5ad") == 0  # another output in the folder
        left = {p.name for p in tmp_path.iterdir()}
        assert left == {"out.h5ad", live.name, ours.name, remote.name}
    finally:
        running.kill()
        running.wait()
