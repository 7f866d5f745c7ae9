"""The config tree: one recipe, the layering order, values that cannot train (NaN, inf, nothing visible), budgets."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from study.config import BUDGETS, RunConfig, apply_overrides, known_keys, type_of_section, visible_patches
from study.config_load import experiments_dir, load_config
from study.errors import UserError
from study.studies import Cell, StudySpec, load_study, study_names


@pytest.fixture(autouse=True)
def no_local_config(tmp_path, monkeypatch):
    """The user's own experiments/local.toml must not leak into what these tests resolve."""
    monkeypatch.setenv("STUDY_LOCAL_CONFIG", str(tmp_path / "no-local.toml"))


# ---------------------------------------------------------------- one recipe
RUN_BOOKKEEPING = {"train.seed"}  # set per trial by the study, not part of the recipe


def test_the_paper_budget_is_the_dataclass_recipe_itself():
    assert not (experiments_dir() / "base.toml").exists()  # no second copy of the recipe
    assert load_config("paper").flat() == RunConfig().flat()
    recipe = RunConfig()
    assert (recipe.data.gap_fps, recipe.train.batch_size * recipe.train.accum_iter) == (30.0, 2048)
    assert recipe.eval.datasets == ["davis", "vip", "jhmdb"]
    assert load_config("smoke").eval.datasets == load_config("cpu").eval.datasets == ["davis"]


def test_every_field_says_where_its_value_comes_from():
    for section in dataclasses.fields(RunConfig):
        if section.name in ("eval", "tracking"):  # paths, protocols and stores: not the training recipe
            continue
        for f in dataclasses.fields(typing.get_type_hints(RunConfig)[section.name]):
            assert any(tag in f.metadata["help"] for tag in ("[paper", "[later", "[ours")), f"{section.name}.{f.name}"


@pytest.mark.parametrize("name", study_names())
def test_the_report_reference_lookup_sees_the_recipe_the_paper_budget_trains(name):
    """analysis.paper.cell_config (where a paper number is looked up) starts from the same defaults as a trial at
    the paper budget, for every cell."""
    from analysis.paper import cell_config

    spec = load_study(name)
    for cell in spec.cells():
        trained = load_config("paper", layers=spec.layers(cell, 0, "paper")).flat()
        looked_up = cell_config(spec, cell.overrides)
        for key in trained:
            if key.startswith(("model.", "data.", "train.")) and key not in RUN_BOOKKEEPING:
                assert looked_up[key] == trained[key], (name, cell.label, key)


# ---------------------------------------------------------------- layering order
def test_each_layer_wins_over_the_one_before(tmp_path, monkeypatch):
    """recipe <- budget <- local.toml / $STUDY_LOCAL_CONFIG <- study base <- study's budget override <- cell
    <- --config <- --set, with one key (train.log_every) set at every layer."""
    exp = tmp_path / "experiments"
    (exp / "budgets").mkdir(parents=True)
    monkeypatch.setenv("STUDY_EXPERIMENTS", str(exp))
    (exp / "budgets" / "smoke.toml").write_text("[train]\nlog_every = 2\n")
    (exp / "local.toml").write_text("[train]\nlog_every = 3\n")
    monkeypatch.delenv("STUDY_LOCAL_CONFIG")
    config_file = tmp_path / "run.toml"
    config_file.write_text("[train]\nlog_every = 8\n")
    cell = Cell("a cell", {"train.log_every": 7})

    def resolve(*, base=True, budget_override=True, cell_layer=True, config=True, flag=True) -> int:
        spec = StudySpec(name="t", title="t", question="", base={"train.log_every": 5} if base else {},
                         budgets={"smoke": {"train.log_every": 6}} if budget_override else {})
        layers = spec.layers(cell if cell_layer else Cell("empty", {}), 0, "smoke")
        return load_config("smoke", layers=layers, config_file=config_file if config else None,
                           overrides={"train.log_every": 9} if flag else {}).train.log_every

    assert resolve() == 9                                              # --set
    assert resolve(flag=False) == 8                                    # --config
    assert resolve(flag=False, config=False) == 7                      # the cell
    assert resolve(flag=False, config=False, cell_layer=False) == 6    # the study's override for this budget
    assert resolve(flag=False, config=False, cell_layer=False, budget_override=False) == 5  # the study's base
    assert resolve(flag=False, config=False, cell_layer=False, budget_override=False, base=False) == 3  # local.toml
    env_file = tmp_path / "elsewhere.toml"
    env_file.write_text("[train]\nlog_every = 4\n")
    monkeypatch.setenv("STUDY_LOCAL_CONFIG", str(env_file))  # the environment's file replaces local.toml
    assert resolve(flag=False, config=False, cell_layer=False, budget_override=False, base=False) == 4
    monkeypatch.setenv("STUDY_LOCAL_CONFIG", str(tmp_path / "none.toml"))
    assert resolve(flag=False, config=False, cell_layer=False, budget_override=False, base=False) == 2  # budget
    (exp / "budgets" / "smoke.toml").write_text("")
    assert resolve(flag=False, config=False, cell_layer=False, budget_override=False, base=False) == 50  # dataclass
    assert RunConfig().train.log_every == 50


def test_a_study_budget_override_may_not_set_a_factor():
    from study.studies import parse_study

    raw = {"title": "t", "axes": {"model": {"patch_size": [8, 16]}}, "budgets": {"cpu": {"model": {"patch_size": 8}}}}
    with pytest.raises(UserError, match=r"\[budgets.cpu\] sets model.patch_size, a factor"):
        parse_study("t", raw)
    raw["budgets"] = {"laptop": {"model": {"img_size": 112}}}
    with pytest.raises(UserError, match=r"\[budgets.laptop\]: no such budget"):
        parse_study("t", raw)


# ---------------------------------------------------------------- values that cannot train
FLOAT_KEYS = [k for k in known_keys() if typing.get_type_hints(type_of_section(k))[k.split(".")[1]] in
              (float, list[float])]


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_inf_are_refused_for_every_float_key(key, bad):
    value = [bad, 1.0] if isinstance(RunConfig().flat()[key], list) else bad
    with pytest.raises(UserError, match=f"{key} = .* is not a finite number"):
        apply_overrides(RunConfig(), {key: value})


def test_float_keys_are_found():
    assert {"train.epochs", "model.mask_ratio", "data.crop_scale", "train.blr"} <= set(FLOAT_KEYS)


@pytest.mark.parametrize("overrides, message", [
    ({"model.img_size": 32, "model.patch_size": 8},  # 16 patches at 0.95: int(16 x 0.05) = 0 visible
     r"model.mask_ratio = 0.95 keeps none of f2's patches visible \(model.img_size = 32 / model.patch_size = 8"),
    ({"model.patch_size": 16, "model.img_size": 64},  # the patch_size study at the cpu budget, before its override
     r"model.mask_ratio = 0.95 keeps none of f2's .*img_size = 64 / model.patch_size = 16"),
    ({"model.mask_ratio_f1": 0.999}, r"model.mask_ratio_f1 = 0.999 keeps none of f1's patches visible"),
    ({"model.mask_ratio": 0.0}, r"model.mask_ratio = 0.0 masks none of f2's 196 patches"),
    ({"model.mask_strategy": "tube"}, r"model.mask_ratio_f1 \(0.0\) must equal model.mask_ratio \(0.95\)"),
    ({"model.mask_strategy": "tube", "model.mask_ratio_f1": 0.5, "model.mask_ratio": 0.9}, r"must equal"),
    ({"model.loss_frames": "both", "model.mask_ratio_f1": 0.5, "model.decoder_pos_f1": False},
     r"model.loss_frames = both .*model.decoder_pos_f1 = true"),
])
def test_configs_that_cannot_train_are_refused_naming_the_keys(overrides, message):
    with pytest.raises(UserError, match=message):
        apply_overrides(RunConfig(), overrides)


def test_tube_and_both_are_accepted_where_they_mean_something():
    cfg = apply_overrides(RunConfig(), {"model.mask_strategy": "tube", "model.mask_ratio_f1": 0.9,
                                        "model.mask_ratio": 0.9, "model.loss_frames": "both"})
    assert visible_patches(cfg.model) == (19, 19)


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("name", study_names())
def test_every_cell_of_every_study_keeps_two_visible_patches_at_every_budget(name, budget):
    spec = load_study(name)
    for cell in spec.cells():
        m = load_config(budget, layers=spec.layers(cell, 0, budget)).model
        n = (m.img_size // m.patch_size) ** 2
        v1, v2 = visible_patches(m)
        assert v2 >= 2, f"{name} [{budget}] {cell.label}: f2 keeps {v2} of {n} patches"
        assert v1 == n or v1 >= 2, f"{name} [{budget}] {cell.label}: f1 keeps {v1} of {n} patches"
