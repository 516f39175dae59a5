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
