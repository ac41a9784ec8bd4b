"""bake() skips a role whose image was baked from the same inputs, and only then.

Packer is never run here: the target's preparation is replaced by one whose finder
answers from a dict of already-baked images (keyed by content hash), and the Packer
step by a recorder. What is checked is the bake's own decision: which roles it hands
to Packer, which it keeps, and which inputs move the content hash.
"""

from __future__ import annotations

import json

import pytest

from imagebake import targets
from imagebake.bake import build, existing
from imagebake.targets.docker import images as docker_images

DOCKER = targets.get("docker")


class FakeTarget:
    """A target whose images are in BAKED ({content hash: entry}); records what is asked."""

    def __init__(self) -> None:
        self.baked: dict[str, dict] = {}
        self.asked: list[tuple[str, str]] = []
        self.packer_runs: list[list[str]] = []

    def find(self, role: str, digest: str) -> dict | None:
        self.asked.append((role, digest))
        return self.baked.get(digest)

    def prepare(self, effective: dict) -> build.Prepared:
        return build.Prepared(find=self.find, hash_inputs={"base_image_id": "sha256:base"})

    def packer_build(self, kind, todo, effective, hashes, prepared, on_event):
        """What Packer would record: one image per role, named after its hash."""
        self.packer_runs.append(list(todo))
        made = {role: {"id": f"imagebake/{role}:{hashes[role][:12]}",
                       "content_hash": hashes[role]} for role in todo}
        for entry in made.values():
            self.baked[entry["content_hash"]] = entry
        return made


@pytest.fixture
def fake(monkeypatch, tmp_path):
    target = FakeTarget()
    monkeypatch.setattr(docker_images.KIND, "prepare", target.prepare)
    monkeypatch.setattr(build, "_packer_build", target.packer_build)
    monkeypatch.setattr(build.packer, "packer_bin", lambda: "/bin/true")
    monkeypatch.setattr(build.vendor, "check", lambda variables: [])  # test_bake_vendor.py
    monkeypatch.setenv("IMAGEBAKE_IMAGES_JSON", str(tmp_path / "images.json"))
    return target


def bake(**variables):
    return DOCKER.bake(variables={"disco_source": "none", **variables})


def test_unchanged_inputs_skip_packer(fake, tmp_path):
    first = bake()
    assert first["built"] == ["master", "node"] and fake.packer_runs == [["master", "node"]]
    again = bake()
    assert again["built"] == [] and again["skipped"] == ["master", "node"]
    assert fake.packer_runs == [["master", "node"]]  # Packer did not run a second time
    assert again["images"] == first["images"]
    recorded = json.loads((tmp_path / "images.json").read_text())["docker"]
    assert recorded == first["images"]


def test_force_rebakes_even_when_unchanged(fake):
    bake()
    DOCKER.bake(variables={"disco_source": "none"}, force=True)
    assert fake.packer_runs == [["master", "node"], ["master", "node"]]


def test_only_the_missing_role_is_baked(fake):
    bake()
    node_hash = next(d for d, e in fake.baked.items() if e["id"].startswith("imagebake/node"))
    del fake.baked[node_hash]
    again = bake()
    assert again["skipped"] == ["master"] and again["built"] == ["node"]
    assert fake.packer_runs[-1] == ["node"]


def test_each_role_is_looked_up_by_its_own_hash(fake):
    bake()
    digests = dict(fake.asked)
    assert set(digests) == {"master", "node"} and digests["master"] != digests["node"]
    assert all(len(d) == 64 for d in digests.values())


@pytest.mark.parametrize("changed", [{"disco_ref": "develop"},
                                     {"docker_base": "imagebake/base:other"},
                                     {"disco_source": "vendored"}])
def test_a_variable_of_the_target_changes_the_hash(fake, changed):
    bake()
    before = set(fake.asked)
    fake.asked.clear()
    result = bake(**changed)
    assert not set(fake.asked) & before
    assert result["built"] == ["master", "node"]


def test_a_variable_of_another_target_does_not(fake):
    bake()
    before = set(fake.asked)
    fake.asked.clear()
    result = bake(aws_region="eu-west-1", qemu_memory="4096")  # not docker's inputs
    assert set(fake.asked) == before
    assert result["skipped"] == ["master", "node"]


def test_the_base_image_is_an_input(fake, monkeypatch):
    bake()
    before = set(fake.asked)
    fake.asked.clear()

    def other_base(effective):
        return build.Prepared(find=fake.find, hash_inputs={"base_image_id": "sha256:new"})

    monkeypatch.setattr(docker_images.KIND, "prepare", other_base)
    assert bake()["built"] == ["master", "node"]
    assert not set(fake.asked) & before


def test_docker_finder_trusts_the_label_not_the_tag(monkeypatch):
    # imagebake/master:<hash12> exists, but its label says another full hash
    digest = "a" * 64
    info = [{"Id": "sha256:1", "Created": "2024-01-01T00:00:00.000Z",
             "Config": {"Labels": {"imagebake.content-hash": "a" * 12 + "b" * 52}}}]
    calls = []

    def docker(*args, check=True):
        calls.append(args)
        return json.dumps(info) if args[:2] == ("image", "inspect") else ""

    monkeypatch.setattr(existing, "docker", docker)
    assert existing.docker_image("master", digest) is None
    info[0]["Config"]["Labels"]["imagebake.content-hash"] = digest
    found = existing.docker_image("master", digest)
    assert found and found["id"] == f"imagebake/master:{digest[:12]}"
    assert ("tag", f"imagebake/master:{digest[:12]}", "imagebake/master:latest") in calls
