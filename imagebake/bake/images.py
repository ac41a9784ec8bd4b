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
def recorded_regions(path: Path | None = None) -> list[str]:
    """Every region build/images.json names for AWS: the bake's and its copies'."""
    from .records import images_json_path

    try:
        data = json.loads((path or images_json_path()).read_text()) or {}
    except (OSError, ValueError):
        return []
    found: set[str] = set()
    for entry in (data.get("aws") or {}).values():
        if isinstance(entry, dict):
            found.update(r for r in [entry.get("region"), *(entry.get("copies") or {})] if r)
    return sorted(found)


def aws_regions(region: str | None, default: str | None,
                path: Path | None = None) -> list[str]:
    """The regions `images`/`prune` look in: --region (comma-separated) and every region
    build/images.json lists; DEFAULT (the AWS config's) when neither names one."""
    from ..clients import aws

    given = [r.strip() for r in (region or "").split(",") if r.strip()]
    for name in given:
        if not aws.REGION_RE.fullmatch(name):
            raise ImagebakeError(f"--region {name!r} is not a region: write e.g. eu-west-1 "
                                 "(several: eu-west-1,us-east-1)")
    regions = sorted(set(given) | set(recorded_regions(path)))
    return regions or ([default] if default else [])


def _clients(region: str | None, profile: str | None, session: Any = None
             ) -> dict[str, Any]:
    """{region: EC2 client} for every region to look in (one session)."""
    from ..clients import aws

    first = (region or "").split(",")[0].strip() or None
    session = session or aws.make_session(first, profile)
    return {r: aws.ec2(session, r) for r in aws_regions(region, session.region_name)}


def aws_images(client: Any) -> list[dict]:
    pages = client.get_paginator("describe_images").paginate(
        Owners=["self"], Filters=[{"Name": "tag-key", "Values": ["imagebake:role"]}])
    rows = []
    for page in pages:
        for image in page["Images"]:
            tags = _tags(image)
            rows.append({
                "target": "aws", "id": image["ImageId"], "role": tags["imagebake:role"],
                "region": client.meta.region_name,
                "names": [image.get("Name", "")],
                "content_hash": tags.get("imagebake:content-hash"),
                "disco": tags.get("imagebake:disco-ref"),
                # a copy's CreationDate is when it was copied: the bake's time comes first
                "created": (tags.get("imagebake:built-at")
                            or image.get("CreationDate", ""))[:19] + "Z",
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


# ---------------------------------------------------------------- listing (each target picks)
def _newest_first(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["role"], r["created"]), reverse=True)


def list_docker() -> list[dict]:
    """The local images baked here (Target.list_images of the docker target)."""
    return _newest_first(docker_images())


def list_aws(region: str | None = None, profile: str | None = None,
             session: Any = None) -> list[dict]:
    """The AMIs of every region to look in (Target.list_images of the aws target)."""
    return _newest_first([r for c in _clients(region, profile, session).values()
                          for r in aws_images(c)])


def plan_prune(rows: list[dict], keep: int, in_use: set[str]) -> list[dict]:
    """The images to remove: all but the newest KEEP per role, never one in use."""
    doomed = []
    for role in ("master", "node"):
        mine = sorted((r for r in rows if r["role"] == role),
                      key=lambda r: r["created"], reverse=True)
        doomed += [r for r in mine[keep:] if r["id"] not in in_use]
    return doomed


def _check_keep(keep: int) -> None:
    if keep < 0:
        raise ImagebakeError(f"--keep must be 0 or more, not {keep}")


def prune_docker(keep: int, dry_run: bool = False,
                 only_ids: set[str] | None = None) -> tuple[list[dict], list[dict]]:
    """Remove old local images (or exactly ONLY_IDS); (removed or planned, kept-in-use)."""
    _check_keep(keep)
    return _prune_in(None, list_docker(), docker_in_use(), keep, dry_run, only_ids)


def prune_aws(keep: int, dry_run: bool = False, region: str | None = None,
              profile: str | None = None, session: Any = None,
              only_ids: set[str] | None = None) -> tuple[list[dict], list[dict]]:
    """Remove old AMIs with their snapshots (or exactly ONLY_IDS), never one in use."""
    _check_keep(keep)
    doomed: list[dict] = []
    spared: list[dict] = []
    # each region on its own: a copy is an AMI of its region, kept or removed with the
    # newest K of that region, never while an instance there runs it
    for client in _clients(region, profile, session).values():
        gone, kept = _prune_in(client, aws_images(client), aws_in_use(client), keep,
                               dry_run, only_ids)
        doomed += gone
        spared += kept
    return doomed, spared


def _prune_in(client: Any, rows: list[dict], used: set[str], keep: int, dry_run: bool,
              only_ids: set[str] | None) -> tuple[list[dict], list[dict]]:
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
    ids = set()
    for entry in aws.values():
        if isinstance(entry, dict) and "id" in entry:
            ids.add(entry["id"])
            ids.update((entry.get("copies") or {}).values())  # every region's copy
    return ids


# ---------------------------------------------------------------- after an AWS bake
DEPRECATE_MAX_DAYS = 3650  # EC2 allows deprecation at most 10 years ahead


def deprecate_days(value: str | None) -> int | None:
    """`--var ami_deprecate_after=90d` -> 90; empty -> None; else one line."""
    if not value:
        return None
    text = str(value).strip()
    if not (text.endswith("d") and text[:-1].isdigit()
            and 1 <= int(text[:-1]) <= DEPRECATE_MAX_DAYS):
        raise ImagebakeError(f"ami_deprecate_after {value!r} is not a number of days: write "
                             f"e.g. 90d (1d to {DEPRECATE_MAX_DAYS}d)")
    return int(text[:-1])


def finish_amis(entries: dict[str, dict], variables: dict[str, str], session: Any = None,
                now: float | None = None) -> dict[str, dict]:
    """What Packer 1.6.6's amazon-ebs cannot set, set through the EC2 API on every AMI
    of ENTRIES (the build region's and each ami_regions copy): ImdsSupport v2.0 when
    imdsv2_support=yes (the launcher then requires IMDSv2) and the deprecation time from
    ami_deprecate_after. Packer >= 1.7 with the amazon plugin >= 1.2 has `imds_support`
    and `deprecate_at` for this; the API calls keep the templates valid on both."""
    import time

    from ..clients import aws

    imds = variables.get("imdsv2_support") == "yes"
    days = deprecate_days(variables.get("ami_deprecate_after"))
    if not entries or not (imds or days):
        return entries
    when = time.strftime("%Y-%m-%dT%H:%M:00Z",
                         time.gmtime((now or time.time()) + (days or 0) * 86400))
    for role, entry in entries.items():
        amis = {entry["region"]: entry["id"], **(entry.get("copies") or {})}
        for region, ami in sorted(amis.items()):
            session = session or aws.make_session(region, None)
            client = aws.ec2(session, region)
            try:
                if imds:
                    client.modify_image_attribute(ImageId=ami, ImdsSupport={"Value": "v2.0"})
                if days:
                    client.enable_image_deprecation(ImageId=ami, DeprecateAt=when)
            except aws.AWS_CALL_ERRORS as exc:
                raise ImagebakeError(
                    f"the {role} AMI {ami} ({region}) was baked and recorded, but "
                    + aws.explain(exc, "setting its IMDS support / deprecation", region=region)
                    + ": fix and run the bake again with --force, or set it with "
                      "`aws ec2 modify-image-attribute` / `enable-image-deprecation`") from None
        if imds:
            entry["imds_support"] = "v2.0"
        if days:
            entry["deprecate_at"] = when
    return entries


def render(rows: list[dict]) -> str:
    if not rows:
        return "no baked images"
    lines = [f"{'target':<7}{'role':<8}{'created':<22}{'hash':<14}{'disco':<12}id"]
    for r in rows:
        where = f" {r['id']} {r['region']}" if r.get("region") else ""
        lines.append(f"{r['target']:<7}{r['role']:<8}{r['created']:<22}"
                     f"{(r['content_hash'] or '-')[:12]:<14}{(r['disco'] or '-')[:11]:<12}"
                     f"{r['names'][0] if r['names'] else r['id']}{where}")
    return "\n".join(lines)
