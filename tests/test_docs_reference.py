"""The reference pages the docs site generates from the code (tools/docs_gen.py) cover it:
every command and option, every lepton.yaml key (each with a description), every action
input and output, every workflow job and its permissions."""

from __future__ import annotations

from pathlib import Path

import yaml

from lepton_ci.core import config
from tools import docs_gen

ROOT = Path(__file__).resolve().parent.parent


def test_the_cli_reference_has_every_command_and_option():
    page = docs_gen.cli_page()
    for name, parser in docs_gen.commands():
        assert f"## {name}\n" in page, name
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in page, (name, flag)


def test_the_config_reference_has_every_key():
    page = docs_gen.config_page()
    for path, cls in docs_gen._sections(config.Config, ""):
        for name, f in cls.model_fields.items():
            assert f"| `{f.alias or name}` |" in page, (path, name)
            assert f.description, f"{cls.__name__}.{name} has no description for the reference"


def test_the_actions_reference_has_every_input_and_output():
    page = docs_gen.actions_page()
    for uses, path in docs_gen.action_files():
        spec = yaml.safe_load(path.read_text())
        assert f"## `{uses}`" in page
        for name in [*(spec.get("inputs") or {}), *(spec.get("outputs") or {})]:
            assert f"| `{name}` |" in page, (uses, name)


def test_the_workflows_reference_has_every_job_and_its_permissions():
    page = docs_gen.workflows_page()
    for path in sorted((ROOT / "templates" / "workflows").glob("*.yml")):
        spec = yaml.safe_load(path.read_text())
        assert f"## `{path.name}`" in page
        for job_id, job in spec["jobs"].items():
            assert f"| `{job_id}`:" in page
            for scope, level in (job.get("permissions") or {}).items():
                assert f"`{scope}: {level}`" in page, (path.name, job_id, scope)


def test_the_generator_writes_the_pages(tmp_path):
    assert docs_gen.main([str(tmp_path)]) == 0
    assert {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.md")} == set(docs_gen.PAGES)
