"""rbft's shipped base model (`rbft-world-base`, the folder beside this file) and the recipe that makes it.

`architecture` holds its parts (a Qwen2-VL at toy scale, a tokenizer trained on the world's
captions), `recipe` the whole making of it (`rbft world pretrain`), `warmup` its vision
tower's first phase, and `card` its model card.
"""
