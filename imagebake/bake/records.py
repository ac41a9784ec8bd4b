"""What a bake leaves behind: build/images.json (the images of every target, read by
the targets' launch) and Packer's manifest of the last run.

    {"docker": {"master": {"id": "imagebake/master:<hash12>", "image_id": "sha256:...",
                           "content_hash": "...", "disco_source": "none",
                           "built_at": "2024-01-01T00:00:00Z"}, "node": {...}},
     "aws": {"master": {"id": "ami-...", "region": "us-east-1", ...}, "node": {...}},
     "qemu": {"master": {"id": "/abs/path/imagebake-master-<hash12>.qcow2", ...}, ...}}
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def images_json_path() -> Path:
    return Path(os.environ.get("IMAGEBAKE_IMAGES_JSON") or ROOT / "build" / "images.json")


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def recorded_images(target: str) -> dict[str, dict[str, Any]]:
    """{role: entry} of TARGET in build/images.json ({} when nothing is recorded)."""
    try:
        return (json.loads(images_json_path().read_text()) or {}).get(target) or {}
    except (OSError, ValueError):
        return {}


def write_images(target: str, entries: Mapping[str, dict[str, Any]],
                 path: Path | None = None) -> Path:
    path = path or images_json_path()
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text()) or {}
        except ValueError:
            data = {}
    data.setdefault(target, {}).update(entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def read_manifest(path: Path, run_uuid: str | None = None) -> dict[str, dict[str, Any]]:
    """{role: build entry} of the manifest's last run."""
    data = json.loads(Path(path).read_text())
    uuid = run_uuid or data.get("last_run_uuid")
    out = {}
    for entry in data.get("builds", []):
        if uuid and entry.get("packer_run_uuid") != uuid:
            continue
        out[entry["name"]] = entry
    return out


def qemu_entry(entry: dict[str, Any], digest: str) -> dict[str, Any] | None:
    """images.json entry of one qemu build of the manifest (strip_path = false)."""
    files = [f["name"] for f in entry.get("files") or [] if f["name"].endswith(".qcow2")]
    if not files:
        return None
    custom = entry.get("custom_data") or {}
    return {"id": str(Path(files[0]).resolve()), "content_hash": digest,
            "disco_source": custom.get("disco_source", ""),
            "built_at": custom.get("built_at", ""),
            "accelerator": custom.get("accelerator", ""),
            "base": custom.get("base", "")}


def _common(entry: dict[str, Any], digest: str) -> dict[str, Any]:
    custom = entry.get("custom_data") or {}
    return {"content_hash": digest, "disco_source": custom.get("disco_source", ""),
            "built_at": custom.get("built_at") or utc_now()}


def docker_entry(role: str, entry: dict[str, Any], digest: str,
                 region: str | None = None) -> dict[str, Any]:
    """images.json entry of one docker build of the manifest: tagged by its hash."""
    return {"id": f"imagebake/{role}:{digest[:12]}", "image_id": entry.get("artifact_id", ""),
            **_common(entry, digest)}


def ami_entry(role: str, entry: dict[str, Any], digest: str,
              region: str | None) -> dict[str, Any]:
    """images.json entry of one amazon-ebs build: the build REGION's AMI and the
    ami_regions copies."""
    artifact = entry.get("artifact_id", "")
    record = _common(entry, digest)
    # "eu-west-1:ami-0456,us-east-1:ami-0123", one region:AMI pair per region (sorted by
    # Packer)
    pairs = dict(item.partition(":")[::2] for item in artifact.split(",") if ":" in item)
    if not pairs:
        return {"id": artifact, "region": region, **record}
    home = region if region in pairs else next(iter(pairs))
    out = {"id": pairs.pop(home), "region": home, **record}
    if pairs:
        out["copies"] = dict(sorted(pairs.items()))
    return out


def qemu_build_entry(role: str, entry: dict[str, Any], digest: str,
                     region: str | None = None) -> dict[str, Any] | None:
    return qemu_entry(entry, digest)
