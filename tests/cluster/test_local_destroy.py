"""destroy of a local cluster removes everything its launch made: containers, network,
volumes, spec files and the record (a cluster of its own, with a unique name, so that
other runs of the suite on this Docker daemon do not interfere)."""

from __future__ import annotations

import subprocess
import uuid

from imagebake import state
from imagebake.targets.docker import cluster as docker_cluster


def labelled(kind: list[str], name: str) -> list[str]:
    return subprocess.run(["docker", *kind, "--filter", f"label=imagebake.cluster={name}"],
                          capture_output=True, text=True, check=True).stdout.split()


def test_destroy_removes_everything_the_launch_made(state_dir, images):
    name = f"gone-{uuid.uuid4().hex[:8]}"
    target = docker_cluster.DockerTarget()
    record = target.launch(name=name, slaves=1, wait=False)
    try:
        assert labelled(["ps", "-aq"], name) and labelled(["network", "ls", "-q"], name)
        spec_dir = state.state_dir() / "clusters" / f"{name}.d"
        assert spec_dir.is_dir()
    finally:
        message = target.destroy(name, record)
    assert "2 containers" in message and "1 networks" in message
    for kind in (["ps", "-aq"], ["network", "ls", "-q"], ["volume", "ls", "-q"]):
        assert labelled(kind, name) == [], kind
    assert not spec_dir.exists() and state.load(name) is None
    assert target.destroy(name, None).startswith("nothing to destroy")
