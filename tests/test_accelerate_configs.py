"""The shipped multi-GPU launch configs are valid accelerate configs (they cannot run without GPUs here)."""

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig

CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_accelerate_config_loads(path):
    config = ClusterConfig.from_yaml_file(path)
    assert config.distributed_type.value in ("DEEPSPEED", "FSDP") and config.num_processes > 1
    assert config.mixed_precision == "bf16"


def test_all_three_are_shipped():
    assert [p.stem for p in CONFIGS] == ["deepspeed_zero2", "deepspeed_zero3", "fsdp"]


def test_the_sharded_configs_let_rbft_gather_the_whole_model():
    # rbft saves a sharded model from accelerate's get_state_dict: ZeRO-3 refuses without 16-bit gathering, and FSDP
    # must give the full state dict (its sharded form is not a model folder)
    zero3 = ClusterConfig.from_yaml_file(next(p for p in CONFIGS if p.stem == "deepspeed_zero3"))
    assert zero3.deepspeed_config["zero_stage"] == 3 and zero3.deepspeed_config["zero3_save_16bit_model"] is True
    fsdp = ClusterConfig.from_yaml_file(next(p for p in CONFIGS if p.stem == "fsdp"))
    assert fsdp.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
