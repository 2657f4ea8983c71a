"""Published models by name: download from a local server, cache, offline use, refusals.

The models are served by an HTTP server on 127.0.0.1 that each test starts itself; nothing is
downloaded from elsewhere. The cache is a temporary folder (``CANCERGPT_SCVI_CACHE``).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from cancergpt_scvi import CancerGPTModel
from cancergpt_scvi.cli import main
from cancergpt_scvi.pretrained import (
    CACHE_ENV,
    ModelDownloadError,
    cache_dir,
    fetch_model,
    register_model,
    registered_models,
)
from tests.test_pretrained import make_cells, write_release


class _Files(BaseHTTPRequestHandler):
    """Serves ``server.files`` ({path: bytes}); paths in ``server.cut`` stop half-way."""

    def do_GET(self) -> None:
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.server.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.server.cut:  # the connection drops mid-download
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class Server:
    """An HTTP server on 127.0.0.1 (port 0) in a thread."""

    def __init__(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
        self.httpd.files, self.httpd.cut, self.httpd.requests = {}, set(), []
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def release_zip(tmp_path_factory) -> tuple[Path, bytes]:
    """A random-weight release folder and its zip (the folder under ``assets/``)."""
    root = tmp_path_factory.mktemp("published")
    folder = write_release(root / "src" / "assets")
    archive = shutil.make_archive(str(root / "release"), "zip", root_dir=root / "src")
    return folder, Path(archive).read_bytes()


@pytest.fixture
def server() -> Iterator[Server]:
    served = Server()
    yield served
    served.stop()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache folder, and a registry restored after the test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    monkeypatch.setattr("cancergpt_scvi.pretrained._registry._REGISTRY", dict(registered_models()))
    return folder


def embedding(model_dir, adata: ad.AnnData) -> np.ndarray:
    model = CancerGPTModel.load_pretrained(model_dir, adata, binning="deterministic")
    return model.get_latent_representation(progress_bar=False)


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_a_name_downloads_once_checks_records_and_then_works_offline(release_zip, server, cache):
    folder, archive = release_zip
    server.httpd.files["/lab/cancergpt.zip"] = archive
    url = server.url("/lab/cancergpt.zip")
    register_model("lab-mirror", url)
    cells = make_cells(n_cells=40)

    model = CancerGPTModel.load_pretrained("lab-mirror", cells.copy(), binning="deterministic")
    z_named = model.get_latent_representation(progress_bar=False)
    np.testing.assert_array_equal(z_named, embedding(folder, cells.copy()))
    assert server.httpd.requests == ["/lab/cancergpt.zip"]

    # one published folder, with the source recorded; no temporary left
    (published,) = [p for p in cache.iterdir()]
    assert published == fetch_model("lab-mirror") and published.name.startswith("lab-mirror-")
    source = json.loads((published / "cancergpt_scvi_source.json").read_text())
    model_sha = hashlib.sha256((folder / "model.pth").read_bytes()).hexdigest()
    assert source["url"] == url
    assert source["archive_sha256"] == hashlib.sha256(archive).hexdigest()
    assert source["model_sha256"] == model_sha

    # what the model is: name, address, layout, weights hash, token rule
    weights = model.pretrained_weights_
    assert (weights.name, weights.source, weights.sha256) == ("lab-mirror", url, model_sha)
    summary = model.summary_string
    for part in ("'lab-mirror' from " + url, "layout: CancerGPT release", model_sha):
        assert part in summary
    assert re.search(r"tokens \(release rule\): <cls>, then the 64 highly variable", summary)
    assert "fill 64 of the release's 64 gene tokens per cell (100%)" in summary

    server.stop()  # offline: the cache answers
    np.testing.assert_array_equal(embedding("lab-mirror", cells.copy()), z_named)
    assert server.httpd.requests == ["/lab/cancergpt.zip"]


def test_a_folder_model_names_its_folder_and_weights_hash(release_zip, cache):
    folder, _ = release_zip
    model = CancerGPTModel.load_pretrained(folder, make_cells(n_cells=40))
    model_sha = hashlib.sha256((folder / "model.pth").read_bytes()).hexdigest()
    assert model.pretrained_weights_.name is None
    assert f"weights: {folder.resolve()} (layout: CancerGPT release)" in model.summary_string
    assert model_sha in model.summary_string and "('release': ties drawn" in model.summary_string
    assert leftovers(cache) == []  # a folder is read where it is
    # saved and loaded, the model still says which weights it holds
    model.save(cache.parent / "saved", overwrite=True)
    loaded = CancerGPTModel.load(cache.parent / "saved")
    assert loaded.summary_string == model.summary_string
    assert loaded.pretrained_weights_ == model.pretrained_weights_


@pytest.mark.parametrize("failure", ["truncated", "cut", "wrong_hash", "missing", "no_release"])
def test_a_failed_download_names_the_url_and_leaves_nothing_used_later(
    release_zip, server, cache, failure
):
    folder, archive = release_zip
    path = "/model.zip"
    right_hash = f"sha256:{hashlib.sha256(archive).hexdigest()}"
    known_hash = "sha256:" + "0" * 64 if failure == "wrong_hash" else None
    if failure == "truncated":
        server.httpd.files[path] = archive[: len(archive) * 2 // 3]
    elif failure == "no_release":  # a zip of something else
        other = io.BytesIO()
        with zipfile.ZipFile(other, "w") as zipped:
            zipped.write(folder / "args.json", "assets/args.json")
        server.httpd.files[path] = other.getvalue()
    elif failure != "missing":
        server.httpd.files[path] = archive
    if failure == "cut":
        server.httpd.cut.add(path)
    url = server.url(path)
    register_model("mirror", url, known_hash=known_hash)
    cells = make_cells(n_cells=40)

    with pytest.raises(ModelDownloadError) as err:
        CancerGPTModel.load_pretrained("mirror", cells.copy())
    message = str(err.value)
    assert url in message and "unzip it, and pass the folder" in message
    assert leftovers(cache) == []

    # the right file at the same address (and the right hash) then loads
    server.httpd.files[path] = archive
    server.httpd.cut.clear()
    register_model("mirror", url, known_hash=None if known_hash is None else right_hash)
    np.testing.assert_array_equal(embedding("mirror", cells.copy()), embedding(folder, cells))
    assert len(leftovers(cache)) == 1


def test_a_cached_copy_that_is_not_the_known_hash_is_refused(release_zip, server, cache):
    _, archive = release_zip
    server.httpd.files["/m.zip"] = archive
    register_model("mirror", server.url("/m.zip"))
    fetch_model("mirror")
    register_model("mirror", server.url("/m.zip"), known_hash="sha256:" + "1" * 64)
    with pytest.raises(ModelDownloadError, match=r"Delete .* to download it again"):
        fetch_model("mirror")
    register_model("mirror", server.url("/m.zip"), known_hash=hashlib.sha256(archive).hexdigest())
    assert fetch_model("mirror").is_dir()


def test_the_temporary_of_a_killed_download_is_never_used_and_is_removed(
    release_zip, server, cache, monkeypatch
):
    folder, archive = release_zip
    server.httpd.files["/m.zip"] = archive
    register_model("mirror", server.url("/m.zip"))
    # a download of this machine whose process is gone, stopped after unzipping
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    from cancergpt_scvi.pretrained._fetch import _host_tag

    partial = cache / f".mirror-{_host_tag()}-{dead.pid}-abc.partial"
    shutil.copytree(folder, partial / "unzipped" / "assets")
    fetched = fetch_model("mirror")
    assert server.httpd.requests == ["/m.zip"]  # downloaded, not taken from the temporary
    assert leftovers(cache) == [fetched.name]


def test_a_path_that_exists_wins_and_an_unknown_name_lists_the_names(
    release_zip, cache, tmp_path, monkeypatch
):
    folder, _ = release_zip
    monkeypatch.chdir(tmp_path)
    shutil.copytree(folder, tmp_path / "mirror")
    register_model("mirror", "http://127.0.0.1:9/unreachable.zip")
    model = CancerGPTModel.load_pretrained("mirror", make_cells(n_cells=40))
    assert model.pretrained_weights_.name is None and leftovers(cache) == []

    with pytest.raises(FileNotFoundError, match=r"registered: cancergpt, mirror\)"):
        CancerGPTModel.load_pretrained("no-such-model", make_cells(n_cells=40))
    with pytest.raises(KeyError, match="registered: cancergpt, mirror"):
        fetch_model("no-such-model")


def test_registration_is_checked_and_the_official_entry_is_the_authors_share(cache, monkeypatch):
    official = registered_models()["cancergpt"]
    assert official.url.endswith("/download") and official.known_hash is None
    for name, url, known_hash in [
        ("../escape", "https://example.org/m.zip", None),
        ("ok", "file:///tmp/m.zip", None),
        ("ok", "https://example.org/m.zip", "sha256:not-hex"),
    ]:
        with pytest.raises(ValueError):
            register_model(name, url, known_hash)
    assert cache_dir() == cache
    monkeypatch.delenv(CACHE_ENV)
    import pooch

    assert cache_dir() == Path(pooch.os_cache("cancergpt_scvi"))


def test_embed_command_takes_a_name(release_zip, server, cache, tmp_path, capsys):
    folder, archive = release_zip
    server.httpd.files["/m.zip"] = archive
    register_model("mirror", server.url("/m.zip"))
    cells = make_cells(n_cells=40)
    cells.write_h5ad(tmp_path / "in.h5ad")
    out = tmp_path / "out.h5ad"
    assert main(["embed", str(tmp_path / "in.h5ad"), "--model", "mirror", "--out", str(out)]) == 0
    written = ad.read_h5ad(out)
    np.testing.assert_allclose(
        written.obsm["X_cancergpt"], embedding(folder, cells.copy()), atol=1e-6
    )
    assert not any(c.startswith("_scvi") for c in written.obs.columns)
    # the unzipped folder itself, as the docs' manual fallback passes it
    by_folder = tmp_path / "by_folder.h5ad"
    assert (
        main(["embed", str(tmp_path / "in.h5ad"), "--model", str(folder), "--out", str(by_folder)])
        == 0
    )
    np.testing.assert_allclose(
        ad.read_h5ad(by_folder).obsm["X_cancergpt"], written.obsm["X_cancergpt"], atol=1e-6
    )

    register_model("broken", server.url("/absent.zip"))
    args = ["embed", str(tmp_path / "in.h5ad"), "--model", "broken", "--out", str(tmp_path / "x")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert server.url("/absent.zip") in err and "unzip it" in err


def test_embed_command_is_reproducible_on_tied_counts(release_zip, tmp_path):
    folder, _ = release_zip
    make_cells(n_cells=40, counts=True).write_h5ad(tmp_path / "in.h5ad")  # counts tie

    def run(name: str, *extra: str) -> np.ndarray:
        out = tmp_path / name
        args = ["embed", str(tmp_path / "in.h5ad"), "--model", str(folder), "--out", str(out)]
        assert main([*args, *extra]) == 0
        return ad.read_h5ad(out).obsm["X_cancergpt"]

    first = run("a.h5ad")
    np.testing.assert_array_equal(run("b.h5ad"), first)  # the default seed: runs agree
    assert np.abs(run("c.h5ad", "--seed", "1") - first).max() > 1e-4  # ties drawn otherwise
