"""Recipes: each method owns and checks its hyper-parameters, a dataset's recipe can change a method's, a
method added as a recipe and a class trains through the trainer untouched, and malformed recipes are refused."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from train import catalog
from train.catalog import RECIPES, RecipeError, read_recipes
from train.config import ConfigError, parse_config, run_config
from train.methods import METHODS
from train.methods.simclr import SimCLR


def test_every_recipe_value_passes_its_own_check_and_every_method_has_a_class():
    for name, recipe in catalog.METHOD_RECIPES.items():
        assert recipe.validate(recipe.defaults) == recipe.defaults
        assert METHODS[name].name == name and recipe.title and recipe.training["lr"] > 0
    orders = [recipe.order for recipe in catalog.METHOD_RECIPES.values()]
    five = ["sinsim", "simclr", "byol", "vicreg", "barlow"]  # --method all's order (and the tables')
    assert orders == sorted(orders) and [m for m in catalog.METHOD_RECIPES if m in five] == five


def test_a_run_gets_its_own_methods_hyper_parameters_only():
    simclr = run_config("simclr", device="cpu", pred_hidden_dim=8, temperature=0.3)
    assert simclr.params == {"temperature": 0.3, "proj_hidden_dim": 2048, "proj_output_dim": 256}
    assert "pred_hidden_dim" not in simclr.training_signature()
    assert run_config("byol", device="cpu", temperature=0.3).params["pred_hidden_dim"] == 4096


@pytest.mark.parametrize("settings,message", [
    (dict(ema_tau=1.5), "ema_tau of byol: 1.5 is not a number in [0, 1)"),
    (dict(proj_hidden_dim=2.5), "proj_hidden_dim of byol: 2.5 is not a positive integer"),
    (dict(proj_hidden_dim=True), "proj_hidden_dim of byol: True is not a positive integer"),
])
def test_hyper_parameters_from_any_source_are_checked_by_the_recipe(settings, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(")", r"\)")):
        run_config("byol", device="cpu", **settings)


def test_a_name_no_method_takes_is_refused():
    with pytest.raises(ConfigError, match="moco_queue: not a trainer setting"):
        run_config("simclr", device="cpu", moco_queue=4096)


def test_a_flag_the_chosen_method_does_not_take_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(["--method", "byol", "--temperature", "0.5"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--temperature: byol takes no such hyper-parameter (only sinsim, simclr do)" in err
    assert parse_config(["--method", "all", "--temperature", "0.5"]).params == {"temperature": 0.5}


def test_a_datasets_recipe_changes_a_methods_and_flags_change_both(monkeypatch):
    digits = catalog.DATASETS["digits"]
    changed = dataclasses.replace(digits, methods={"simclr": {"temperature": 0.7, "lr": 0.2}})
    monkeypatch.setitem(catalog.DATASETS, "digits", changed)
    cfg = run_config("simclr", device="cpu")
    assert cfg.params["temperature"] == 0.7 and cfg.lr == 0.2
    cfg = run_config("simclr", device="cpu", temperature=0.1, lr=0.3)
    assert cfg.params["temperature"] == 0.1 and cfg.lr == 0.3
    assert run_config("sinsim", "mnist", device="cpu").params["temperature"] == 0.2  # other datasets: the recipe's


class Toy(SimCLR):
    """A method that exists only in this test: SimCLR's heads, a loss of its own."""

    name = "toy"

    def loss_from(self, z1, z2):
        loss = self.params["toy_weight"] * (z1 - z2).pow(2).sum(1).mean() + self.ntxent(z1, z2)
        return loss, {"toy": loss}


TOY = '''
title = "Toy"
model = "test_recipes:Toy"
order = 6
extends = "simclr"

[params.toy_weight]
value = 0.5
check = "non-negative"
help = "weight of the toy term"
'''


def test_a_method_added_as_a_recipe_and_a_class_trains_through_the_trainer(tmp_path, monkeypatch):
    """The checklist's claim: nothing in the trainer names the methods."""
    from train import load_dataset, run_method

    root = tmp_path / "recipes"
    shutil.copytree(RECIPES, root)
    (root / "methods" / "toy.toml").write_text(TOY)
    _, methods = read_recipes(root)
    monkeypatch.setitem(catalog.METHOD_RECIPES, "toy", methods["toy"])
    monkeypatch.setitem(METHODS, "toy", Toy)
    cfg = run_config("toy", device="cpu", image_size=8, batch_size=16, epochs=1, train_subset=32, probe_epochs=1,
                     geometry_points=20, probe_train_subset=100, cpu_threads="1", progress_every=0.0,
                     toy_weight=0.25, out=str(tmp_path / "run"))
    assert cfg.params == {"temperature": 0.2, "proj_hidden_dim": 2048, "proj_output_dim": 256, "toy_weight": 0.25}
    data = load_dataset("digits", None, tmp_path, 8)
    result = run_method(cfg, data)
    assert result["method"] == "toy" and result["signature"]["toy_weight"] == 0.25 and 0 <= result["linear"] <= 100
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["toy_weight"] == 0.25 and "pred_hidden_dim" not in recorded
    assert torch.isfinite(torch.tensor(result["final_loss"]))


@pytest.mark.parametrize("edit,message", [
    (lambda t: t + '\n[params.width]\nvalue = 3\ncheck = "tiny"\n', "check 'tiny' does not apply to a int"),
    (lambda t: t + '\n[params.width]\ncheck = "positive"\n', "give a value, or a type"),
    (lambda t: t + '\n[params.width]\nvalue = 0\ncheck = "positive"\n', "0 is not a positive integer"),
    (lambda t: t.replace('extends = "simclr"', 'extends = "moco"'), "extends 'moco'"),
    (lambda t: t + '\n[params.width]\ntype = "int"\nvalue = 2.5\n', "value 2.5 is not a int"),
    (lambda t: t + '\nqueue = 1\n', "unknown keys ['queue']"),
    (lambda t: t + '\n[[conflicts]]\nwhen = { depth = "set" }\nreason = "x"\n', "are not its hyper-parameters"),
])
def test_malformed_method_recipes_are_refused_naming_the_file(tmp_path, edit, message):
    root = tmp_path / "recipes"
    shutil.copytree(RECIPES, root)
    (root / "methods" / "toy.toml").write_text(edit(TOY))
    with pytest.raises(RecipeError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")) as err:
        read_recipes(root)
    assert "toy.toml" in str(err.value)


def test_methods_sharing_a_flag_must_declare_it_alike(tmp_path):
    root = tmp_path / "recipes"
    shutil.copytree(RECIPES, root)
    (root / "methods" / "toy.toml").write_text(TOY + '\n[params.temperature]\nvalue = 1\ncheck = "positive"\n')
    with pytest.raises(RecipeError, match="temperature is declared unlike"):
        read_recipes(root)


def test_a_datasets_recipe_may_only_change_what_a_method_takes(tmp_path):
    root = tmp_path / "recipes"
    shutil.copytree(RECIPES, root)
    path = root / "datasets" / "digits.toml"
    path.write_text(path.read_text() + '\n[methods.byol]\ntemperature = 0.5\n')
    with pytest.raises(RecipeError, match=r"\[methods.byol\]: temperature is neither one of its hyper-parameters"):
        read_recipes(root)
    path.write_text(path.read_text().replace("temperature = 0.5", "ema_tau = 2.0"))
    with pytest.raises(RecipeError, match="ema_tau of byol: 2.0 is not a number in"):
        read_recipes(root)
