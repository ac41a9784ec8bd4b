"""Finding an image already baked from the same inputs (same content hash): the bake
skips a role when one exists. One finder per target; each returns the images.json
entry of the image, or None."""

from __future__ import annotations

import json
import time
from typing import Any

from ..clients.docker import docker
from ..errors import ImagebakeError
from .records import ROOT

QEMU_OUT = ROOT / "build" / "qemu"


def docker_image(role: str, digest: str) -> dict[str, Any] | None:
    """imagebake/<role>:<hash12> when its label carries DIGEST (also tagged :latest)."""
    ref = f"imagebake/{role}:{digest[:12]}"
    out = docker("image", "inspect", ref, check=False)
    if not out.strip():
        return None
    info = json.loads(out)[0]
    labels = (info.get("Config") or {}).get("Labels") or {}
    if labels.get("imagebake.content-hash") != digest:
        return None
    docker("tag", ref, f"imagebake/{role}:latest")
    return {"id": ref, "image_id": info["Id"], "content_hash": digest,
            "disco_source": labels.get("imagebake.disco-source", ""),
            "built_at": labels.get("imagebake.built-at") or info.get("Created", "")[:19] + "Z"}


def qemu_image(role: str, digest: str) -> dict[str, Any] | None:
    """The newest qcow2 baked from the same inputs (build/qemu/<role>-<hash12>-<stamp>/)."""
    found = sorted(QEMU_OUT.glob(f"{role}-{digest[:12]}-*/imagebake-{role}-{digest[:12]}.qcow2"))
    if not found:
        return None
    return {"id": str(found[-1].resolve()), "content_hash": digest,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                      time.gmtime(found[-1].stat().st_mtime))}


def aws_image(client: Any, region: str, role: str, digest: str) -> dict[str, Any] | None:
    """The newest available AMI of ours tagged with ROLE and DIGEST."""
    import botocore.exceptions

    from ..clients import aws

    try:
        images = client.describe_images(Owners=["self"], Filters=[
            {"Name": "tag:imagebake:content-hash", "Values": [digest]},
            {"Name": "tag:imagebake:role", "Values": [role]},
            {"Name": "state", "Values": ["available"]},
        ])["Images"]
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise ImagebakeError(aws.explain(exc, "looking for baked AMIs", region=region)) from None
    if not images:
        return None
    image = max(images, key=lambda i: i.get("CreationDate", ""))
    tags = {t["Key"]: t["Value"] for t in image.get("Tags") or []}
    return {"id": image["ImageId"], "region": region, "name": image.get("Name", ""),
            "content_hash": digest, "disco_source": tags.get("imagebake:disco-ref", ""),
            "built_at": tags.get("imagebake:built-at") or image.get("CreationDate", "")}
