"""Baked image lifecycle: list what was baked, prune the old, never what runs.

Local images are found by their `imagebake.role` label, AMIs by their
`imagebake:role` tag; an image used by any cluster (container or instance
carrying the cluster label/tag) is never removed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..clients.docker import docker
from ..errors import ImagebakeError


def _tags(image: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in image.get("Tags") or []}


# ---------------------------------------------------------------- docker
def docker_images() -> list[dict]:
    out = docker("images", "--no-trunc", "--filter", "label=imagebake.role",
                 "--format", "{{.ID}}")
    rows = []
    seen = set()
    for image_id in out.split():
        if image_id in seen:
            continue
        seen.add(image_id)
        info = json.loads(docker("image", "inspect", image_id))[0]
        labels = info["Config"].get("Labels") or {}
        if labels.get("imagebake.role") not in ("master", "node"):
            continue  # the base image carries role=base
        rows.append({
            "target": "docker", "id": image_id, "role": labels["imagebake.role"],
            "names": info.get("RepoTags") or [],
            "content_hash": labels.get("imagebake.content-hash"),
            "disco": labels.get("imagebake.disco-source"),
            "created": info["Created"][:19] + "Z",
        })
    return rows


def docker_in_use() -> set[str]:
    ids = docker("ps", "-aq", "--filter", "label=imagebake.cluster").split()
    if not ids:
        return set()
    return set(docker("inspect", "--format", "{{.Image}}", *ids).split())


def _docker_remove(image: dict) -> None:
    docker("rmi", "--force", *(image["names"] or [image["id"]]))


# ---------------------------------------------------------------- aws
def _ec2(region: str | None, profile: str | None, session: Any = None) -> Any:
    from ..clients import aws

    return aws.ec2(session or aws.make_session(region, profile))


def aws_images(client: Any) -> list[dict]:
    pages = client.get_paginator("describe_images").paginate(
        Owners=["self"], Filters=[{"Name": "tag-key", "Values": ["imagebake:role"]}])
    rows = []
    for page in pages:
        for image in page["Images"]:
            tags = _tags(image)
            rows.append({
                "target": "aws", "id": image["ImageId"], "role": tags["imagebake:role"],
                "names": [image.get("Name", "")],
                "content_hash": tags.get("imagebake:content-hash"),
                "disco": tags.get("imagebake:disco-ref"),
                "created": image.get("CreationDate", "")[:19] + "Z",
                "snapshots": [m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", [])
                              if "Ebs" in m and m["Ebs"].get("SnapshotId")],
            })
    return rows


def aws_in_use(client: Any) -> set[str]:
    pages = client.get_paginator("describe_instances").paginate(Filters=[
        {"Name": "tag-key", "Values": ["imagebake:cluster"]},
        {"Name": "instance-state-name",
         "Values": ["pending", "running", "stopping", "stopped", "shutting-down"]},
    ])
    return {i["ImageId"] for page in pages for r in page["Reservations"] for i in r["Instances"]}


def _aws_remove(client: Any, image: dict) -> None:
    client.deregister_image(ImageId=image["id"])
    for snapshot in image.get("snapshots", []):
        client.delete_snapshot(SnapshotId=snapshot)


# ---------------------------------------------------------------- both
def list_images(target: str = "docker", region: str | None = None,
                profile: str | None = None, session: Any = None) -> list[dict]:
    if target == "docker":
        rows = docker_images()
    elif target == "aws":
        rows = aws_images(_ec2(region, profile, session))
    else:
        raise ImagebakeError(f"unknown target {target!r}: choose docker or aws")
    return sorted(rows, key=lambda r: (r["role"], r["created"]), reverse=True)


def plan_prune(rows: list[dict], keep: int, in_use: set[str]) -> list[dict]:
    """The images to remove: all but the newest KEEP per role, never one in use."""
    doomed = []
    for role in ("master", "node"):
        mine = sorted((r for r in rows if r["role"] == role),
                      key=lambda r: r["created"], reverse=True)
        doomed += [r for r in mine[keep:] if r["id"] not in in_use]
    return doomed


def prune(keep: int, target: str = "docker", dry_run: bool = False,
          region: str | None = None, profile: str | None = None, session: Any = None,
          only_ids: set[str] | None = None) -> tuple[list[dict], list[dict]]:
    """Remove old images (or exactly ONLY_IDS); returns (removed or planned, kept-in-use)."""
    if keep < 0:
        raise ImagebakeError(f"--keep must be 0 or more, not {keep}")
    client = _ec2(region, profile, session) if target == "aws" else None
    rows = aws_images(client) if client else list_images(target)
    used = aws_in_use(client) if client else docker_in_use()
    if only_ids is not None:
        candidates = [r for r in rows if r["id"] in only_ids]
        doomed = [r for r in candidates if r["id"] not in used]
        spared = [r for r in candidates if r["id"] in used]
    else:
        doomed = plan_prune(rows, keep, used)
        spared = [r for r in rows if r["id"] in used]
    if not dry_run:
        for image in doomed:
            _aws_remove(client, image) if client else _docker_remove(image)
    return doomed, spared


def new_ami_ids(path: Path | None = None) -> set[str]:
    """The AMIs the last `invoke bake --target aws` recorded (to discard them)."""
    from .records import images_json_path

    path = path or images_json_path()
    if not path.exists():
        raise ImagebakeError(f"{path} not found: nothing was baked here")
    aws = json.loads(path.read_text()).get("aws") or {}
    return {entry["id"] for entry in aws.values() if isinstance(entry, dict) and "id" in entry}


def render(rows: list[dict]) -> str:
    if not rows:
        return "no baked images"
    lines = [f"{'target':<7}{'role':<8}{'created':<22}{'hash':<14}{'disco':<12}id"]
    for r in rows:
        lines.append(f"{r['target']:<7}{r['role']:<8}{r['created']:<22}"
                     f"{(r['content_hash'] or '-')[:12]:<14}{(r['disco'] or '-')[:11]:<12}"
                     f"{r['names'][0] if r['names'] else r['id']}")
    return "\n".join(lines)
