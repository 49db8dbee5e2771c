"""The ``--method all`` table says what it shows: the untrained encoder's row
is the floor, every test accuracy below it is flagged, and the digits demo is
called a pipeline check."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from train.results import BELOW, markdown_table


def record(method, linear, mlp, knn, dataset="digits", epochs=3):
    return {"method": method, "dataset": dataset, "linear": linear, "mlp": mlp, "knn": knn, "epochs": epochs,
            "budget": {"epochs": epochs, "pretrain_images": 1347}}


def rows(table):
    """``{method: [linear, MLP, kNN cells]}`` of a markdown table."""
    out = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in ("method",):
            out[cells[0]] = cells[1:4]
    return out


def test_accuracies_below_the_untrained_encoder_are_flagged_and_only_those():
    table = markdown_table([record("sinsim", 98.0, 97.1, 96.0), record("vicreg", 96.22, 97.5, 90.0),
                            record("barlow", 77.11, 60.0, 95.0), record("random init", 97.78, 97.0, 95.0, epochs=0)])
    got = rows(table)
    assert got["sinsim"] == ["98.00", "97.10", "96.00"]
    assert got["vicreg"] == [f"96.22 {BELOW}", "97.50", f"90.00 {BELOW}"]
    assert got["barlow"] == [f"77.11 {BELOW}", f"60.00 {BELOW}", "95.00"]  # equal to the floor is not below
    assert got["random init"] == ["97.78", "97.00", "95.00"]
    assert "(vicreg: linear, kNN; barlow: linear, MLP)" in table


def test_the_digits_table_calls_itself_a_pipeline_check_with_its_budget():
    table = markdown_table([record("sinsim", 98.0, 97.0, 96.0, epochs=5), record("random init", 97.0, 96.0, 95.0, epochs=0)])
    assert "a pipeline check, not a comparison of the methods" in table
    assert "(5 epochs on 1,347 8x8 digits)" in table
    assert "untrained encoder" in table and BELOW not in rows(table)["sinsim"][0]


def test_other_datasets_and_tables_without_the_floor_carry_no_digits_note():
    cifar = markdown_table([record("sinsim", 80.0, 82.0, 75.0, dataset="cifar10"),
                            record("random init", 35.0, 38.0, 30.0, dataset="cifar10", epochs=0)])
    assert "pipeline check" not in cifar and "untrained encoder" in cifar
    assert not any(BELOW in cell for cells in rows(cifar).values() for cell in cells)
    single = markdown_table([record("sinsim", 98.0, 97.0, 96.0)])
    assert "pipeline check" not in single and "untrained" not in single
