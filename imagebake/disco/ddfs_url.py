"""Inputs the cluster downloads itself, for `invoke ddfs-load --input URL`.

http(s):// URLs go to the slaves as they are; s3://bucket/key is checked here with the
user's own credentials (HeadObject: a missing or unreadable object is one line, exit 2,
before anything starts) and turned into a presigned GET URL valid PRESIGN_SECONDS (no
credentials and no IAM role on the instances). The slaves then download, each its share,
check --sha256, unpack and store the blobs (ddfs_push.fetch); only the URL without its
query string is ever printed.
"""

from __future__ import annotations

import urllib.parse
from pathlib import PurePosixPath

from ..errors import ImagebakeError

PRESIGN_SECONDS = 900


def prepare(items: list, session=None) -> None:
    """Presign every s3:// input in ITEMS (Source objects), in place."""
    s3_items = [item for item in items if item.url.startswith("s3://")]
    if not s3_items:
        return
    import botocore.exceptions

    if session is None:
        import boto3

        session = boto3.Session()
    client = session.client("s3")
    for item in s3_items:
        parts = urllib.parse.urlparse(item.given)
        bucket, key = parts.netloc, parts.path.lstrip("/")
        try:
            client.head_object(Bucket=bucket, Key=key)
        except botocore.exceptions.NoCredentialsError:
            raise ImagebakeError(f"input {item.given}: no AWS credentials here to read it "
                                 "(configure a profile or AWS_* variables)") from None
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
            why = {"404": "no such object", "NoSuchKey": "no such object",
                   "NoSuchBucket": "no such bucket", "403": "not readable with your "
                   "credentials", "AccessDenied": "not readable with your credentials"}.get(
                       str(code), f"{code or 'error'}")
            raise ImagebakeError(f"input {item.given}: {why} (HTTP {status}); nothing "
                                 "stored") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise ImagebakeError(f"input {item.given}: {exc}") from None
        item.url = client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=PRESIGN_SECONDS)
        item.given = f"s3://{bucket}/{key}"


def item(source, blob_prefix) -> dict:
    """The U frame's fields for SOURCE: the URL to fetch, the blob name prefix (BLOB_PREFIX
    of the URL's file name), what to print (no query: a presigned URL's signature stays off
    screens and logs), the sha256."""
    path = urllib.parse.urlparse(source.url).path
    shown = source.given if source.given.startswith("s3://") else source.url.split("?", 1)[0]
    return {"url": source.url, "name": blob_prefix(PurePosixPath(path).name or "download"),
            "shown": shown, "sha256": source.sha256}
