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


def test_models_for_inference_load_onto_this_process_device_and_training_ones_stay_for_the_trainer(monkeypatch, tmp_path):
    import transformers
    from accelerate import PartialState

    from rbft.modeling import inference_device, load_for_videos

    placed = []
    real = transformers.AutoModelForImageTextToText.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        placed.append(kwargs.get("device_map"))
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", classmethod(spy))
    device = PartialState().device
    model, _ = load_for_videos("rbft-world-base", lambda _: None, dtype="float32")
    assert placed == [{"": str(device)}] and model.device == device
    adapter = get_peft_model(load_model("rbft-world-base", dtype="float32"),
                             LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    adapter.save_pretrained(tmp_path / "adapter")
    placed.clear()
    load_model(tmp_path / "adapter", dtype="float32", device=inference_device())  # the base under an adapter too
    load_for_videos("rbft-world-base", lambda _: None, dtype="float32", training=True)
    assert placed == [{"": str(device)}, None]


def test_flash_attention_without_flash_attn_falls_back_to_sdpa_with_a_warning():
    import pytest

    with pytest.warns(UserWarning, match="flash-attn.*sdpa"):
        model = load_model("rbft-world-base", dtype="float32", attn_implementation="flash_attention_2")
    assert model.config.text_config._attn_implementation == "sdpa"


def test_bfloat16_becomes_float16_where_the_gpu_has_no_bfloat16_and_autocast_follows_the_weights():
    import pytest

    from rbft.modeling import half_for, mixed_precision

    with pytest.warns(UserWarning, match="no bfloat16"):
        assert half_for(torch.bfloat16, torch.bfloat16, bf16_supported=False) == torch.float16
    with pytest.warns(UserWarning, match="no bfloat16"):
        assert half_for("auto", torch.bfloat16, bf16_supported=False) == torch.float16  # the checkpoint's own
    assert half_for("auto", torch.float32, bf16_supported=False) == "auto"
    assert half_for(torch.float32, torch.bfloat16, bf16_supported=False) == torch.float32  # asked for explicitly
    assert half_for(torch.bfloat16, torch.bfloat16, bf16_supported=True) == torch.bfloat16
    assert mixed_precision(torch.bfloat16, cuda=True, bf16_supported=True) == "bf16"
    assert mixed_precision(torch.float16, cuda=True, bf16_supported=True) == "fp16"  # not bf16 autocast on fp16
    assert mixed_precision(torch.float32, cuda=True, bf16_supported=False) == "fp16"  # V100, T4
    assert mixed_precision(torch.bfloat16, cuda=False, bf16_supported=False) == "no"


def test_a_model_rebuilt_from_gathered_weights_is_the_model_and_shares_nothing_with_it():
    from rbft.modeling import rebuilt

    ids = torch.tensor([[1, 2, 3, 4]])
    plain = load_model("rbft-world-base", dtype="float32")
    lora = get_peft_model(load_model("rbft-world-base", dtype="float32"),
                          LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    for name, param in lora.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param)
    for model in (plain, lora):
        # what accelerate's get_state_dict gives on the main process: a copy of every weight
        whole = rebuilt(model, {k: v.clone() for k, v in model.state_dict().items()}).eval()
        assert type(whole) is type(model) and not any(p.is_meta for p in whole.parameters())
        assert torch.equal(whole(input_ids=ids).logits, model.eval()(input_ids=ids).logits)
        mine = {p.data_ptr() for p in model.parameters()}
        assert not any(p.data_ptr() in mine for p in whole.parameters())
    assert whole.get_base_model().get_output_embeddings().weight is whole.get_base_model().get_input_embeddings().weight


def test_weights_trained_in_float32_are_saved_in_the_dtype_the_model_was_loaded_in(tmp_path):
    from safetensors import safe_open

    from rbft.config import TrainingConfig
    from rbft.modeling import load_processor, save_model
    from rbft.training import prepare

    model = prepare(load_model("rbft-world-base", dtype="bfloat16"), TrainingConfig(method="full"))
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    save_model(model, load_processor("rbft-world-base"), tmp_path / "m")
    with safe_open(str(tmp_path / "m" / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}


def test_a_process_that_trained_under_zero3_still_loads_whole_models_for_inference():
    """transformers keeps the trainer's DeepSpeed config after training; under ZeRO-3 it would shard every model it
    loads and refuse a device_map. Evaluation, attention and the rebuilt model must load whole all the same."""
    import weakref

    from transformers.integrations import deepspeed

    from rbft.modeling import load_for_videos, rebuilt

    class Zero3:
        def is_zero3(self):
            return True

    kept = Zero3()
    deepspeed._hf_deepspeed_config_weak_ref = weakref.ref(kept)
    try:
        assert deepspeed.is_deepspeed_zero3_enabled()
        model, _ = load_for_videos("rbft-world-base", lambda _: None, dtype="float32")
        whole = rebuilt(model, model.state_dict())
        assert deepspeed.is_deepspeed_zero3_enabled()  # the training's setting is left as it was
    finally:
        deepspeed.unset_hf_deepspeed_config()
    assert not any(p.is_meta or p.numel() == 0 for p in [*model.parameters(), *whole.parameters()])
