"""Every `invoke` command the GitHub workflows call exists, with the flags they pass,
so a renamed task or flag breaks our CI, not the user's. The workflows also
validate against GitHub's schema (`invoke lint` runs check-jsonschema)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from invoke import Collection

import tasks

WORKFLOWS = sorted((Path(__file__).parents[2] / ".github" / "workflows").glob("*.yml"))


def invoke_calls() -> list[tuple[str, list[str]]]:
    calls = []
    for path in WORKFLOWS:
        text = path.read_text()
        # Join folded (>-) scalars: indented continuation lines of a `run:` command.
        text = re.sub(r"\n\s+(--\S)", r" \1", text)
        for match in re.finditer(r"(?:^|[\s;&|])invoke\s+([^\n;&|]+)", text):
            words = shlex.split(match.group(1).replace('"${args[@]}"', ""))
            calls.append((words[0], [w.split("=")[0] for w in words[1:] if w.startswith("--")]))
    return calls


def flags_of(task) -> set[str]:
    names = set()
    for arg in task.get_arguments():
        for name in arg.names:
            names.add("--" + name.replace("_", "-"))
            if arg.kind is bool:
                names.add("--no-" + name.replace("_", "-"))
    return names


def test_workflows_call_invoke():
    assert len(WORKFLOWS) >= 2 and len(invoke_calls()) >= 8


@pytest.mark.parametrize("name,flags", invoke_calls(), ids=lambda v: str(v))
def test_invoked_task_and_flags_exist(name, flags):
    collection = Collection.from_module(tasks)
    assert name in collection.task_names, f"workflow calls unknown task {name!r}"
    known = flags_of(collection[name])
    assert set(flags) <= known, f"unknown flags for {name}: {set(flags) - known}"
