"""Fixtures of the agent tests: a Context in a temporary root, and a master with
three expected nodes on 127.0.0.1 (stopped after the test)."""

import pytest

from .helpers import Cluster, contexts


@pytest.fixture
def agent_ctx(tmp_path):
    """A Context rooted in a temp dir, with a fake runner and a settable clock."""
    return contexts(tmp_path)


@pytest.fixture
def cluster(agent_ctx):
    c = Cluster(agent_ctx)
    yield c
    c.master.stop()
