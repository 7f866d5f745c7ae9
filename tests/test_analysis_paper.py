"""The paper's numbers, pinned by (setting, metric); which cell each belongs to; the paper's directions; which table
letters a report may name."""

import pytest

from analysis.paper import SOURCED_TABLES, paper_direction, paper_table, paper_value, references
from study.studies import load_study, study_names

# Every number the project may show as the paper's, by (setting, metric), with its source tag. These are the only
# facts trusted: Table 1 read from the paper [P]; the 400-epoch default and the decoder ablation quoted by later
# papers [S]. A number here and in analysis/paper_values.toml must agree both ways.
PINNED = {
    ("Table 1 ViT-S/16", "davis.jf_mean"): (62.0, "P"), ("Table 1 ViT-S/16", "davis.j_mean"): (60.3, "P"),
    ("Table 1 ViT-S/16", "davis.f_mean"): (63.7, "P"), ("Table 1 ViT-S/16", "vip.miou"): (37.3, "P"),
    ("Table 1 ViT-S/16", "jhmdb.pck_0.1"): (47.0, "P"), ("Table 1 ViT-S/16", "jhmdb.pck_0.2"): (76.1, "P"),
    ("Table 1 ViT-S/8", "davis.jf_mean"): (71.4, "P"), ("Table 1 ViT-S/8", "davis.j_mean"): (68.4, "P"),
    ("Table 1 ViT-S/8", "davis.f_mean"): (74.5, "P"), ("Table 1 ViT-S/8", "vip.miou"): (45.9, "P"),
    ("Table 1 ViT-S/8", "jhmdb.pck_0.1"): (61.9, "P"), ("Table 1 ViT-S/8", "jhmdb.pck_0.2"): (83.8, "P"),
    ("400-epoch default", "davis.jf_mean"): (58.1, "S"), ("400-epoch default", "davis.j_mean"): (56.6, "S"),
    ("400-epoch default", "davis.f_mean"): (59.6, "S"), ("400-epoch default", "vip.miou"): (33.3, "S"),
    ("400-epoch default", "jhmdb.pck_0.1"): (44.7, "S"), ("400-epoch default", "jhmdb.pck_0.2"): (73.0, "S"),
    ("400-epoch decoder cross", "davis.jf_mean"): (52.2, "S"),
}


def test_paper_values_file_equals_the_pinned_table_both_ways():
    found = {(ref["setting"], metric): (value, ref["source"]) for ref in references()
             for metric, value in ref["values"].items()}
    assert len(found) == sum(len(ref["values"]) for ref in references())  # no (setting, metric) twice
    assert set(found) - set(PINNED) == set(), "a paper value with no pinned source"
    assert set(PINNED) - set(found) == set(), "a pinned paper value missing from paper_values.toml"
    for key, want in PINNED.items():
        assert found[key] == want, key


def test_each_reference_resolves_to_its_pinned_number():
    """Through the cell matching the report uses: the right row gets the right number, not just the file."""
    for (setting, metric), (value, source) in PINNED.items():
        study, cell = {"Table 1 ViT-S/16": ("patch_size", "16"), "Table 1 ViT-S/8": ("patch_size", "8"),
                       "400-epoch default": ("mask_ratio", "0.95"),
                       "400-epoch decoder cross": ("decoder", "cross")}[setting]
        assert paper_value(study, cell, metric) == (value, source), (setting, metric)


def test_paper_values_by_cell():
    assert paper_value("mask_ratio", {"model.mask_ratio": 0.95}, "jhmdb.pck_0.2") == (73.0, "S")
    assert paper_value("mask_ratio", "0.9", "davis.jf_mean") is None  # in Table 2(d), but no number is known
    assert paper_value("decoder", "cross", "vip.miou") is None
    assert paper_value("decoder", "joint", "davis.jf_mean") is None
    assert paper_value("encoder_decoder", "encoder=joint, decoder=cross", "davis.jf_mean") is None
    assert paper_value("lr_temperature", {"train.blr": 1e-3}, "davis.jf_mean") is None  # a search: never
    assert paper_value("masking", "symmetric 0.5, f2 loss", "davis.jf_mean") is None
    assert paper_value("masking", "asymmetric 0 / 0.95", "davis.jf_mean") == (58.1, "S")


def _cell(study, label):
    return next(c for c in load_study(study).cells() if c.label == label)


@pytest.mark.parametrize("study, row, expect_row_better, factor", [
    ("decoder", "cross", False, "decoder"),  # cross-self (default) beats cross [S]
    ("decoder", "joint", None, None),  # nothing known about the joint decoder
    ("mask_ratio", "0.5", False, "mask ratio"),  # the paper's choice of 0.95 implies it beats the rest
    ("mask_ratio", "0.9", False, "mask ratio"),
    ("masking", "symmetric 0.5, f2 loss", False, "masking symmetry"),  # asymmetric beats symmetric [S, weak]
    ("masking", "symmetric 0.9, f2 loss", False, "masking symmetry"),
    ("mask_strategy", "block", None, None),
    ("encoder", "joint", None, None),
    ("frame_gap", None, None, None),
])
def test_paper_direction(study, row, expect_row_better, factor):
    spec = load_study(study)
    default = next(c for c in spec.cells() if c.is_default)
    others = [c for c in spec.cells() if not c.is_default and (row is None or c.label == row)]
    assert others
    for cell in others:
        got = paper_direction(spec, cell.overrides, default.overrides, spec.primary_metric)
        if factor is None:
            assert got is None, cell.label
        else:
            assert got is not None and (got[0].factor, got[1]) == (factor, expect_row_better), cell.label
    # the direction is stated for DAVIS J&F only; asked the other way round, the row is the expected winner
    if factor:
        assert paper_direction(spec, others[0].overrides, default.overrides, "vip.miou") is None
        flipped = paper_direction(spec, default.overrides, others[0].overrides, spec.primary_metric)
        assert flipped[1] is True


def test_a_grid_cell_that_changes_two_factors_has_no_direction():
    spec = load_study("encoder_decoder")
    default = next(c for c in spec.cells() if c.is_default)
    both = _cell("encoder_decoder", "encoder=joint, decoder=cross")
    assert paper_direction(spec, both.overrides, default.overrides, "davis.jf_mean") is None
    only_decoder = _cell("encoder_decoder", "encoder=siamese, decoder=cross")
    assert paper_direction(spec, only_decoder.overrides, default.overrides, "davis.jf_mean")[0].factor == "decoder"


def test_only_sourced_table_letters_are_named():
    assert SOURCED_TABLES == {"1", "2d"}
    assert paper_table(load_study("mask_ratio")) == "Table 2d"
    assert paper_table(load_study("patch_size")) == "Table 1"
    for name in study_names():
        spec = load_study(name)
        assert spec.table in SOURCED_TABLES | {""}, f"{name}: table {spec.table!r} is not a sourced letter"
