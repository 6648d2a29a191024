"""TrainConfig: presets, overrides (strings, dicts, YAML) and validation listing every problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from chatbot.config import DEFAULT_PRESET, PRESETS, PrepareConfig, TrainConfig
from chatbot.errors import ConfigError


def test_the_defaults_are_the_preset_they_name() -> None:
    config = TrainConfig()
    assert config.preset == DEFAULT_PRESET
    assert config == TrainConfig.from_preset(DEFAULT_PRESET)
    assert config.quantization == "nf4" and config.lora_target == "all-linear"  # QLoRA


def test_a_preset_changes_what_it_lists_and_keeps_the_defaults(monkeypatch) -> None:
    monkeypatch.setitem(PRESETS, "tiny", {"lora_r": 4, "lora_alpha": 8, "epochs": 1.0})
    config = TrainConfig.from_preset("tiny")
    assert (config.preset, config.lora_r, config.lora_alpha, config.epochs) == ("tiny", 4, 8, 1.0)
    changed = {"preset", "lora_r", "lora_alpha", "epochs"}
    defaults = TrainConfig().to_dict()
    assert {k: v for k, v in config.to_dict().items() if k not in changed} == {
        k: v for k, v in defaults.items() if k not in changed
    }


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_prepare_checks_lengths_against_the_presets_own(name: str) -> None:
    # One source: the length prepare warns at is the length the preset trains on.
    assert PrepareConfig(preset=name).training_length == TrainConfig.from_preset(name).max_length
    assert PrepareConfig(preset=name, max_tokens=300).training_length == 300


def test_presets_read_ever_longer_conversations() -> None:
    lengths = [TrainConfig.from_preset(name).max_length for name in PRESETS]
    assert lengths == sorted(set(lengths)), "each preset is offered for longer conversations"


def test_preset_then_yaml_then_overrides(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("preset: balanced\nepochs: 7\nlearning_rate: 5.0e-5\nlora_r: 4\n")
    config = TrainConfig.from_preset(None, ["epochs=2", "lora_alpha=8"], yaml_path=settings)
    assert config.preset == "balanced"
    assert config.epochs == 2.0  # override beats the file
    assert config.learning_rate == 5e-5 and config.lora_r == 4  # the file beats the preset
    assert config.lora_alpha == 8
    assert PRESETS["balanced"]["max_length"] != TrainConfig().max_length
    assert config.max_length == PRESETS["balanced"]["max_length"]  # the preset beats the default
    # An explicit preset name wins over the file's.
    assert TrainConfig.from_preset("thorough", yaml_path=settings).preset == "thorough"


def test_override_values_are_parsed_and_typed() -> None:
    config = TrainConfig.from_preset(
        "quick",
        [
            "learning_rate=2e-4",
            "epochs=1",
            "share_prefix=false",
            "lr_scheduler=linear",
            "base_model=org/model",
        ],
    )
    assert config.learning_rate == 2e-4 and isinstance(config.learning_rate, float)
    assert config.epochs == 1.0 and isinstance(config.epochs, float)
    assert config.share_prefix is False
    assert config.lr_scheduler == "linear" and config.base_model == "org/model"
    as_dict = TrainConfig.from_preset("quick", {"batch_size": 4, "quantization": "none"})
    assert as_dict.batch_size == 4 and as_dict.quantization == "none"
    assert TrainConfig.from_preset().preset == DEFAULT_PRESET


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_preset(
            "quick",
            [
                "learning_rate=-1",
                "batch_size=2.5",
                "quantization=nf8",
                "lora_dropout=1.5",
                "learnin_rate=1",
                "no-equals-sign",
                "share_prefix=maybe",
            ],
        )
    problems = err.value.problems
    assert len(problems) == 7, problems
    text = str(err.value)
    for fragment in (
        "learning_rate must be greater than 0",
        "batch_size must be a whole number",
        "quantization must be one of nf4, none",
        "lora_dropout must be in [0, 1)",
        "unknown setting 'learnin_rate' (did you mean learning_rate?)",
        "'no-equals-sign' is not of the form key=value",
        "share_prefix must be true or false",
    ):
        assert fragment in text


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig(epochs=0, lora_r=0, warmup_ratio=1.0, system_prompt="sometimes")  # type: ignore[arg-type]
    assert len(err.value.problems) == 4


def test_unknown_preset_and_file_errors_name_the_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown preset 'fast'; choose one of: quick"):
        TrainConfig.from_preset("fast")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1, 2]\n")
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_preset("quick", yaml_path=bad)
    assert str(bad) in str(err.value) and "epochs must be a number" in str(err.value)
    with pytest.raises(ConfigError, match="mapping"):
        bad.write_text("- just a list\n")
        TrainConfig.from_preset("quick", yaml_path=bad)


def test_yaml_round_trip(tmp_path: Path) -> None:
    config = TrainConfig.from_preset("thorough", ["epochs=1.5", "system_prompt=never"])
    text = config.to_yaml(tmp_path / "config.yaml")
    assert (tmp_path / "config.yaml").read_text() == text
    assert TrainConfig.from_yaml(tmp_path / "config.yaml") == config


class _Model(torch.nn.Linear):
    """Stands in for a loaded base model: a size, and parameters on the CPU."""

    def __init__(self, parameters: int) -> None:
        super().__init__(2, 2)
        self.size = parameters

    def num_parameters(self) -> int:
        return self.size


@pytest.mark.parametrize(
    ("setting", "parameters", "free_gb", "processes", "expected"),
    [
        ("auto", 135_000_000, 16, 1, False),  # small model, plenty of memory: keep speed
        ("auto", 135_000_000, 2, 1, True),  # a machine short of memory
        ("auto", 135_000_000, 4, 2, True),  # two processes share 4 GB
        ("auto", 7_000_000_000, 64, 1, True),  # a large model
        ("off", 135_000_000, 1, 1, False),
        ("on", 135_000_000, 64, 1, True),
    ],
)
def test_gradient_checkpointing_setting(
    monkeypatch, setting, parameters, free_gb, processes, expected
):
    from chatbot.training import recipe

    monkeypatch.setattr(recipe, "available_memory_bytes", lambda device: free_gb * 2**30)
    config = TrainConfig(gradient_checkpointing=setting)
    model = _Model(parameters)
    assert recipe.use_gradient_checkpointing(config, model, processes=processes) is expected


def test_on_and_off_are_read_as_the_words_they_are() -> None:
    # YAML 1.1 reads bare on/off as booleans; the README's --set gradient_checkpointing=on works.
    assert (
        TrainConfig.from_preset("quick", ["gradient_checkpointing=on"]).gradient_checkpointing
        == "on"
    )
    off = TrainConfig.from_preset("quick", ["gradient_checkpointing=off"])
    assert off.gradient_checkpointing == "off"
    with pytest.raises(ConfigError, match="system_prompt must be one of brand, always, never"):
        TrainConfig.from_preset("quick", ["system_prompt=on"])
