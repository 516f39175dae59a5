"""The package's shape (STYLE.md): which modules may import which, checked on the source itself."""

import ast
from pathlib import Path

import rbft

PACKAGE = Path(rbft.__file__).parent
# transformers' model, configuration, processor and tokenizer classes of a family (Qwen2VLConfig, ...)
FAMILY = ("ForConditionalGeneration", "Config", "Processor", "Tokenizer", "Model")


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import statement in `path`, at any depth (function-level ones too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def modules(folder: str = "") -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def test_no_stage_knows_the_synthetic_world():
    wrong = [(p.name, m) for p in modules("stages") for m, _ in imports(p) if m.startswith("rbft.world")]
    assert not wrong and modules("stages")


def test_the_data_layer_imports_neither_the_config_nor_the_stages():
    wrong = [(str(p.relative_to(PACKAGE)), m) for p in modules("data") for m, _ in imports(p)
             if m == "rbft.config" or m.startswith(("rbft.stages", "rbft.pipeline", "rbft.runs"))]
    assert not wrong and modules("data")


def test_only_modeling_imports_model_classes():
    found = {}
    for path in modules():
        for module, names in imports(path):
            family = [n for n in names if module.startswith("transformers") and n != "PreTrainedModel"
                      and not n.startswith("Auto") and n.endswith(FAMILY) and n[0].isupper()]
            if family or module.startswith("transformers.models"):
                found.setdefault(str(path.relative_to(PACKAGE)), []).extend(family or [module])
    assert set(found) == {"modeling.py"}, found
