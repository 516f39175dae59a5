"""Loading models: the shipped one by name, and adapters saved on it before it moved in the package."""

import json

import torch
from peft import LoraConfig, get_peft_model

from rbft.modeling import SHIPPED_MODEL, load_model, resolve


def test_an_adapter_that_names_the_shipped_models_old_folder_still_loads(tmp_path):
    assert resolve("rbft-world-base") == str(SHIPPED_MODEL)
    base = load_model("rbft-world-base", dtype="float32")
    adapter = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    for name, param in adapter.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param)  # an adapter that changes something
    adapter.save_pretrained(tmp_path / "adapter")
    config = tmp_path / "adapter" / "adapter_config.json"
    # the shipped model lay in rbft/world/base_model before rbft/basemodel; an adapter records its absolute folder
    old = "/home/someone/rbft/src/rbft/world/base_model"
    config.write_text(json.dumps({**json.loads(config.read_text()), "base_model_name_or_path": old}))
    loaded = load_model(tmp_path / "adapter", dtype="float32")
    ids = torch.tensor([[1, 2, 3]])
    assert torch.allclose(loaded(input_ids=ids).logits, adapter(input_ids=ids).logits, atol=1e-5)
    assert resolve("/a/folder/that/exists/not/base_model") == "/a/folder/that/exists/not/base_model"
