"""Saving a model's folder whole: a save replaces an earlier folder only once it is complete."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


class WholeFolderSaveMixin:
    """``save`` that writes a fresh folder and then puts it in place of ``dir_path``.

    scvi-tools' ``save(overwrite=True)`` writes into the existing folder, so files of an earlier
    save that this one does not write (an ``adata.h5ad``, a fine-tuned encoder) stay and are
    read back by ``load`` as this model's. Here the save goes to a temporary sibling folder,
    which replaces ``dir_path`` when it is complete: the folder then holds exactly what this
    save wrote, and a failed save leaves the earlier folder as it was. With a ``prefix``,
    several models may share one folder, so scvi-tools' behaviour is kept.

    Models add their own files in :meth:`_save_extras`.
    """

    def save(
        self,
        dir_path: str | os.PathLike,
        prefix: str | None = None,
        overwrite: bool = False,
        save_anndata: bool = False,
        **kwargs,
    ) -> None:
        """Save the model (scvi-tools format) to the folder ``dir_path``.

        Parameters
        ----------
        dir_path
            Folder to write. With ``overwrite=True`` an existing folder is replaced whole.
        prefix
            Prefix of the file names (scvi-tools); the folder is then written in place.
        overwrite
            Replace an existing ``dir_path``; otherwise an existing one is an error.
        save_anndata
            Also save the model's AnnData (``adata.h5ad``).
        **kwargs
            Further arguments of :meth:`scvi.model.base.BaseModelClass.save`.
        """
        if prefix is not None:
            super().save(
                str(dir_path),
                prefix=prefix,
                overwrite=overwrite,
                save_anndata=save_anndata,
                **kwargs,
            )
            self._save_extras(Path(dir_path), overwrite=overwrite)
            return
        target = Path(dir_path)
        if target.exists() and not overwrite:
            raise ValueError(
                f"{target} already exists. Pass overwrite=True to replace it, or save to "
                "another folder."
            )
        if target.exists() and not target.is_dir():
            raise ValueError(f"{target} exists and is not a folder; save to another path.")
        target.parent.mkdir(parents=True, exist_ok=True)
        fresh = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        )
        try:
            super().save(str(fresh), overwrite=True, save_anndata=save_anndata, **kwargs)
            self._save_extras(fresh, overwrite=True)
        except BaseException:
            shutil.rmtree(fresh, ignore_errors=True)
            raise
        if target.exists():
            # the earlier folder moves aside first, so that one rename puts the new one in place
            earlier = Path(
                tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent)
            )
            os.replace(target, earlier / target.name)
            os.replace(fresh, target)
            shutil.rmtree(earlier, ignore_errors=True)
        else:
            os.replace(fresh, target)

    def _save_extras(self, folder: Path, overwrite: bool) -> None:
        """Write the model's files beyond scvi-tools' into ``folder`` (none by default)."""
