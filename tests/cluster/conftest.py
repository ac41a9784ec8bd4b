"""Fixtures for end-to-end tests of the local Docker target.

These start real containers from the baked images; they need a Docker daemon.
Every cluster made here is destroyed afterwards, even when a test fails.
"""

from __future__ import annotations

import os
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
    """The images every cluster of the session starts from: Disco from vendor/ when its
    archives are here (the default bake; skipped by content hash when already baked),
    else a bare bake. Pinned for the session: a bake elsewhere that rewrites
    build/images.json meanwhile does not change what these tests launch."""
    if not docker_ok():
        pytest.skip("no running Docker daemon: the local cluster tests need one")
    from imagebake import targets
    from imagebake.bake import vendor
    from imagebake.errors import ImagebakeError

    try:
        vendor.check({"disco_source": "vendored"})
        variables = {}
    except ImagebakeError:
        variables = {"disco_source": "none"}
    result = targets.get("docker").bake(only=None, variables=variables, force=False)
    refs = {role: result["images"][role]["id"] for role in ("master", "node")}
    patch = pytest.MonkeyPatch()
    patch.setattr(docker_cluster, "image_refs", lambda: dict(refs))
    yield refs
    patch.undo()


def images_disco_source(refs: dict) -> str:
    """The master image's imagebake.disco-source label ('none' when baked without Disco)."""
    out = subprocess.run(["docker", "image", "inspect", "--format",
                          '{{ index .Config.Labels "imagebake.disco-source" }}', refs["master"]],
                         capture_output=True, text=True).stdout.strip()
    return out if out and out != "<no value>" else "none"


@pytest.fixture(scope="session")
def with_disco(images):
    """Skip unless the baked images carry Disco."""
    from imagebake.clients.disco import NO_DISCO

    source = images_disco_source(images)
    if source in NO_DISCO:
        pytest.skip(f"the baked images carry no Disco (imagebake.disco-source={source}): its "
                    "archives are missing here; make them with `vendor/refresh.sh make` (needs "
                    "GitHub) and bake again")
    return source


@pytest.fixture(scope="session")
def without_disco(images):
    """Skip unless the baked images were baked with disco_source=none."""
    from imagebake.clients.disco import NO_DISCO

    source = images_disco_source(images)
    if source not in NO_DISCO:
        pytest.skip(f"the baked images carry Disco ({source}): this checks a bare bake")
    return source


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
    """The shared 3-slave cluster most tests read (and do not break); the pid keeps two
    sessions on one host (their containers share Docker's names) apart."""
    return launcher(f"e2e-{os.getpid() % 100000}", 3)
