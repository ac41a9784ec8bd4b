"""Fixtures shared by the suites that launch clusters (tests/cluster, tests/vm)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory):
    """A private imagebake state directory for the session's cluster records."""
    path = tmp_path_factory.mktemp("state")
    old = os.environ.get("IMAGEBAKE_STATE_DIR")
    os.environ["IMAGEBAKE_STATE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("IMAGEBAKE_STATE_DIR", None)
    else:
        os.environ["IMAGEBAKE_STATE_DIR"] = old
