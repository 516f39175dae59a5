"""README and docs/ stay true: every relative link resolves, and every `rbft` command and config key they name
exists (`rbft --help` lists the command; the config schema has the key)."""

import re
from pathlib import Path

import pytest
import typer
import yaml
from pydantic import BaseModel

from rbft.cli import app
from rbft.config import ExperimentConfig

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SECTIONS = set(ExperimentConfig.model_fields)
FILES = {"py", "json", "jsonl", "yaml", "md", "html", "png", "safetensors"}


def ids(pages):
    return [str(p.relative_to(ROOT)) for p in pages]


def commands() -> set[str]:
    """Every command path `rbft --help` lists: `run`, `data check`, `world generate`, ..."""
    root, found = typer.main.get_command(app), set()

    def walk(group, prefix):
        for name, command in getattr(group, "commands", {}).items():
            found.add(f"{prefix}{name}")
            walk(command, f"{prefix}{name} ")

    walk(root, "")
    return found


def key_exists(path: list[str]) -> bool:
    """Whether `path` (e.g. ["training", "stage2", "min_steps"]) is a key of the experiment config."""
    model: type[BaseModel] | None = ExperimentConfig
    for part in path:
        if model is None:
            return True  # inside a free mapping (task.labels, ablations): any key
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        nested = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        model = nested[0] if nested else None
    return True


def yaml_keys(node, prefix=()) -> list[list[str]]:
    if not isinstance(node, dict):
        return []
    out = []
    for key, value in node.items():
        out.append([*prefix, str(key)])
        out += yaml_keys(value, (*prefix, str(key)))
    return out


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_every_relative_link_resolves(page):
    text = page.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: link to {target} does not resolve"
        if anchor:
            headings = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                        for h in re.findall(r"^#+ (.*)$", file.read_text(), flags=re.M)}
            assert anchor in headings, f"{page.name}: no heading #{anchor} in {file.name}"


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_every_rbft_command_named_exists(page):
    known = commands()
    groups = {c.split()[0] for c in known if " " in c}
    text = page.read_text()
    code = re.findall(r"```.*?```", text, flags=re.S) + re.findall(r"`[^`\n]+`", re.sub(r"```.*?```", "", text, flags=re.S))
    named = [m for span in code for m in re.findall(r"(?:^|[\s(`])rbft ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", span, flags=re.M)]
    assert named or page.name != "README.md", "the README names no rbft command"
    for command, sub in named:
        assert command in known, f"{page.name}: `rbft {command}` is not a command (rbft --help lists {sorted(known)})"
        if command in groups:
            assert f"{command} {sub}" in known, f"{page.name}: `rbft {command} {sub}` is not a command"


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_every_config_key_named_exists(page):
    text = page.read_text()
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S):
        for path in yaml_keys(yaml.safe_load(block) or {}):
            if path[0] in SECTIONS or path[0] in ("name",):
                assert key_exists(path), f"{page.name}: {'.'.join(path)} is not a config key"
    for dotted in re.findall(r"`((?:" + "|".join(SECTIONS) + r")(?:\.[a-z_0-9]+)+)", text):
        if dotted.rsplit(".", 1)[1] in FILES:
            continue  # a file (`training.py`, `rationales.jsonl`), not a key
        assert key_exists(dotted.split(".")), f"{page.name}: `{dotted}` is not a config key"
