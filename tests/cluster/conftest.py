"""Fixtures for end-to-end tests of the local Docker target.

These start real containers from the baked images; they need a Docker daemon.
Every cluster made here is destroyed afterwards, even when a test fails.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from imagebake import state
from imagebake.targets.docker import cluster as docker_cluster


def docker_ok() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/cluster/" in str(item.fspath):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def images():
    if not docker_ok():
        pytest.skip("no running Docker daemon: the local cluster tests need one")
    refs = docker_cluster.image_refs()
    missing = [r for r in refs.values()
               if subprocess.run(["docker", "image", "inspect", r],
                                 capture_output=True).returncode != 0]
    if missing:
        from imagebake.bake import build

        build.bake(target="docker", only=None, variables={"disco_source": "none"}, force=False)
    return docker_cluster.image_refs()


@pytest.fixture(scope="session")
def launcher(state_dir, images):
    """launcher(name, slaves, **kw) -> record; destroys every cluster it made at the end."""
    made = []

    def launch(name, slaves, **kw):
        made.append(name)
        return docker_cluster.DockerTarget().launch(name=name, slaves=slaves, **kw)

    yield launch
    for name in made:
        docker_cluster.DockerTarget().destroy(name, state.load(name))


@pytest.fixture(scope="session")
def cluster(launcher):
    """The shared 3-slave cluster most tests read (and do not break)."""
    return launcher("e2e", 3)
