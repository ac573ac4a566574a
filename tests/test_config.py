"""The one config rule: every params.yaml section is read by one reader into its config class, which
refuses unknown keys and wrong types in one line; code defaults are params.yaml's values."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO
from mednns import MedNNSError, from_section
from mednns.data import PrepareConfig
from mednns.metaspace import FeatureConfig, MetaSpaceConfig
from mednns.metaspace.loo import EvaluateConfig
from mednns.selector import FinetuneConfig, SelectConfig
from mednns.selector.benchmark import BenchmarkConfig
from mednns.train.continual import ContinualConfig
from mednns.train.supernet import SupernetConfig
from mednns.zoo import ZooConfig
from registry.models import RegisterConfig

SECTIONS = {"prepare": PrepareConfig, "supernet": SupernetConfig, "continual": ContinualConfig,
            "continual_resnet18": ContinualConfig, "zoo": ZooConfig, "register": RegisterConfig,
            "features": FeatureConfig, "metaspace": MetaSpaceConfig, "evaluate": EvaluateConfig,
            "select": SelectConfig, "finetune": FinetuneConfig, "benchmark": BenchmarkConfig}


def _params(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


@pytest.mark.parametrize("name", ["params.yaml", "params-full.yaml"])
def test_every_section_of_both_params_files_reads_through_its_config(name):
    params = _params(name)
    assert set(params) == {"datasets", *SECTIONS}, "a section without a config class is read by nobody"
    for section, cls in SECTIONS.items():
        cfg = from_section(cls, params[section], section)
        assert set(vars(cfg)) == set(params[section]), f"{name} {section}: every knob is written out"


def test_code_defaults_are_the_demo_params():
    params = _params("params.yaml")
    for section, cls in SECTIONS.items():
        if section == "continual_resnet18":  # a second network of the same loop: its defaults are `continual`'s
            continue
        assert cls() == from_section(cls, params[section], section), section


@pytest.mark.parametrize("section,key,value,message", [
    ("zoo", "num_arch", 5, "unknown setting"),
    ("zoo", "num_archs", "many", "expected an integer"),
    ("zoo", "num_archs", True, "expected an integer"),
    ("supernet", "lr", "fast", "expected a number"),
    ("features", "widths", 16, "expected a list"),
    ("select", "budget", [1, 2], "expected a mapping"),
    ("prepare", "download", "yes", "true or false"),
])
def test_a_wrong_setting_is_one_line_naming_it(section, key, value, message):
    params = dict(_params("params.yaml")[section])
    params[key] = value
    with pytest.raises(MedNNSError, match=message) as err:
        from_section(SECTIONS[section], params, section)
    assert f"params.yaml {section}" in str(err.value) and "\n" not in str(err.value)


def test_a_stage_refuses_a_typo_in_params_yaml_before_doing_anything(tmp_path):
    params = _params("params.yaml")
    params["prepare"]["sise"] = 64
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = subprocess.run([sys.executable, "-m", "pipelines.prepare", "bloodmnist", "data/prepared/bloodmnist"],
                         cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "prepare: unknown setting(s) sise" in out.stderr
    assert not (tmp_path / "data").exists()


def test_the_select_command_defaults_are_the_select_section():
    """`mednns select` repeats SelectConfig's defaults as literals (importing it would import torch before a
    usage error is reported): the command and the `select` stage must pick the same way."""
    from mednns.cli import DEFAULT_PRETRAINED, select_cmd
    from mednns.cli.selection import ZOO_NETWORKS
    from mednns.selector.pretrained import ZOO_NETWORKS as zoo_networks

    options = {p.name: p for p in select_cmd.params}
    cfg = SelectConfig()
    assert options["pretrained_size"].default == cfg.pretrained_size and options["k"].default == cfg.k
    assert options["subnet_margin"].default == cfg.subnet_margin
    assert DEFAULT_PRETRAINED == cfg.pretrained and set(options["pretrained"].type.choices) >= set(cfg.pretrained)
    assert ZOO_NETWORKS == zoo_networks


@given(st.lists(st.tuples(st.sampled_from(sorted(SECTIONS)), st.sampled_from(["seed", "epochs", "lr"]),
                          st.one_of(st.integers(-5, 5), st.floats(0.001, 10), st.booleans())), max_size=4))
@settings(max_examples=50, deadline=None)
def test_an_ad_hoc_run_reads_its_changed_settings_over_params_yaml(items):
    """`--set SECTION.KEY=VALUE` (the selection benchmark's ablations): each value reaches its section as
    YAML reads it, the last one of a key wins, and the sections left alone stay params.yaml's."""
    from pipelines.stage import changed_settings

    changed = changed_settings([f"{s}.{k}={yaml.safe_dump(v).splitlines()[0]}" for s, k, v in items], tuple(SECTIONS))
    expected: dict = {}
    for s, k, v in items:
        expected.setdefault(s, {})[k] = v
    assert changed == expected


@pytest.mark.parametrize("item", ["finetune.epochs", "epochs=3", "finetune=3", "nosuch.epochs=3", ".epochs=3",
                                  "finetune.=3", "finetune.epochs=[1"])
def test_a_malformed_changed_setting_is_one_line_naming_it(item):
    from pipelines.stage import changed_settings

    with pytest.raises(MedNNSError, match="--set") as err:
        changed_settings([item], ("finetune", "benchmark"))
    assert repr(item) in str(err.value) and "\n" not in str(err.value)


def test_a_changed_setting_is_checked_like_params_yaml(monkeypatch):
    from pipelines import stage

    monkeypatch.chdir(REPO)
    changed = stage.changed_settings(["finetune.epochs=3", "benchmark.k=7"], ("finetune", "benchmark"))
    assert stage.config("finetune", FinetuneConfig, changed).epochs == 3
    assert stage.config("finetune", FinetuneConfig) == from_section(FinetuneConfig, _params("params.yaml")["finetune"],
                                                                   "finetune")
    with pytest.raises(MedNNSError, match="params.yaml finetune: unknown setting"):
        stage.config("finetune", FinetuneConfig, stage.changed_settings(["finetune.epoch=3"], ("finetune",)))
