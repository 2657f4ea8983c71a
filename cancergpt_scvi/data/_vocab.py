"""The gene vocabulary: gene symbols to token ids."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path

import anndata as ad
import numpy as np

from ._gene_symbols import gene_symbols

logger = logging.getLogger(__name__)

CLS_TOKEN = "<cls>"
PAD_TOKEN = "<pad>"
EOC_TOKEN = "<eoc>"
SPECIAL_TOKENS = (CLS_TOKEN, PAD_TOKEN, EOC_TOKEN)


class GeneVocab:
    """Gene symbols to token ids, with the special tokens ``<cls>``, ``<pad>`` and ``<eoc>``.

    Parameters
    ----------
    token_to_id
        Mapping of every token (special tokens included) to its integer id. Ids must be unique.

    Examples
    --------
    >>> vocab = GeneVocab.from_genes(["TP53", "MYC"])
    >>> vocab["<cls>"], vocab["TP53"]
    (0, 3)
    """

    def __init__(self, token_to_id: Mapping[str, int]):
        token_to_id = {str(k): int(v) for k, v in token_to_id.items()}
        missing = [t for t in SPECIAL_TOKENS if t not in token_to_id]
        if missing:
            raise ValueError(
                f"The vocabulary lacks the special tokens {missing}; a CancerGPT vocabulary "
                f"holds {list(SPECIAL_TOKENS)} besides the genes."
            )
        ids = np.fromiter(token_to_id.values(), dtype=np.int64, count=len(token_to_id))
        if len(np.unique(ids)) != len(ids) or ids.min() < 0:
            raise ValueError("Token ids in the vocabulary must be unique non-negative integers.")
        self._token_to_id = token_to_id

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_genes(cls, genes: Iterable[str]) -> GeneVocab:
        """Build a vocabulary from gene symbols: special tokens get 0, 1, 2, genes follow."""
        tokens = list(SPECIAL_TOKENS)
        seen = set(tokens)
        for g in genes:
            g = str(g)
            if g not in seen:
                seen.add(g)
                tokens.append(g)
        return cls({t: i for i, t in enumerate(tokens)})

    @classmethod
    def from_json(cls, path: str | PathLike) -> GeneVocab:
        """Read a ``{token: id}`` JSON file, as in the published release's ``vocab.json``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No vocabulary file at {path}.")
        try:
            with path.open() as fh:
                data = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(
                f"{path} is not valid JSON ({err}); a vocabulary file holds a JSON object "
                "{token: id}."
            ) from err
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object {{token: id}}.")
        return cls(data)

    def to_json(self, path: str | PathLike) -> None:
        """Write the vocabulary as a ``{token: id}`` JSON file."""
        with Path(path).open("w") as fh:
            json.dump(self._token_to_id, fh)

    def to_dict(self) -> dict[str, int]:
        """A copy of the ``{token: id}`` mapping."""
        return dict(self._token_to_id)

    # -- lookup --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._token_to_id)

    def __contains__(self, token: object) -> bool:
        return token in self._token_to_id

    def __getitem__(self, token: str) -> int:
        return self._token_to_id[token]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GeneVocab) and other._token_to_id == self._token_to_id

    def __repr__(self) -> str:
        return f"GeneVocab({len(self) - len(SPECIAL_TOKENS)} genes)"

    @property
    def size(self) -> int:
        """Rows needed in an embedding table indexed by these ids (max id + 1)."""
        return max(self._token_to_id.values()) + 1

    @property
    def cls_id(self) -> int:
        """Id of ``<cls>``."""
        return self._token_to_id[CLS_TOKEN]

    @property
    def pad_id(self) -> int:
        """Id of ``<pad>``."""
        return self._token_to_id[PAD_TOKEN]

    @property
    def genes(self) -> list[str]:
        """The gene tokens (special tokens excluded), in id order."""
        items = sorted(self._token_to_id.items(), key=lambda kv: kv[1])
        return [t for t, _ in items if t not in SPECIAL_TOKENS]

    def lookup(self, genes: Iterable[str]) -> np.ndarray:
        """Ids of ``genes``; genes not in the vocabulary get ``-1``."""
        get = self._token_to_id.get
        return np.fromiter((get(str(g), -1) for g in genes), dtype=np.int64)

    def match(
        self,
        adata: ad.AnnData,
        gene_symbols_key: str | None = None,
        min_genes: int = 10,
        min_fraction: float = 0.0,
    ) -> np.ndarray:
        """Map an AnnData's genes to token ids, refusing when too few match.

        Parameters
        ----------
        adata
            Data whose genes are ``var_names`` or ``adata.var[gene_symbols_key]``.
        gene_symbols_key
            Column of ``var`` holding gene symbols, when ``var_names`` are not symbols
            (e.g. Ensembl ids).
        min_genes
            Fewest genes that must be found.
        min_fraction
            Smallest fraction of the AnnData's genes that must be found.

        Returns
        -------
        Token id per gene of ``adata`` (``-1`` where the gene is not in the vocabulary).
        """
        symbols = gene_symbols(adata, gene_symbols_key)
        ids = self.lookup(symbols)
        n_found = int((ids >= 0).sum())
        n_total = len(ids)
        logger.info("%d of %d genes are in the vocabulary.", n_found, n_total)
        if n_found < min_genes or (n_total and n_found / n_total < min_fraction):
            unmatched = [s for s, i in zip(symbols, ids, strict=True) if i < 0][:5]
            where = "var_names" if gene_symbols_key is None else f"adata.var[{gene_symbols_key!r}]"
            if not unmatched:  # every gene is known: the AnnData has too few genes
                raise ValueError(
                    f"adata has {n_total} gene(s), all in the vocabulary, but at least "
                    f"{min_genes} are needed: give data that measure more genes."
                )
            raise ValueError(
                f"Only {n_found} of {n_total} genes of {where} are in the vocabulary "
                f"({len(self) - len(SPECIAL_TOKENS)} genes, e.g. {self.genes[:3]}); "
                f"unmatched examples: {unmatched}. The vocabulary holds gene symbols: if "
                "var_names are Ensembl ids or other identifiers, pass gene_symbols_key= the "
                "var column with symbols."
            )
        return ids
