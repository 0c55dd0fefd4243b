"""A small S3 client for S3-compatible stores (AWS, SeaweedFS, MinIO, ...): buckets and whole
files, nothing more.

Contract:

* :class:`S3Endpoint` names the store: its URL (``https://host:port``; ``http://`` only for
  stores that offer it), the access key and secret, the region, an optional CA bundle (PEM) for
  a store whose certificate no system CA signed, and whether to verify TLS at all.
  Addressing is path-style (``https://host/bucket/key``): self-hosted stores rarely have the
  wildcard DNS that virtual-host style needs.
* Every method either does what it says or raises :class:`~shipyard.errors.RuntimeFailure`
  whose message names the operation, the ``s3://bucket/key`` and the endpoint, and gives the
  store's error code and message (or the connection/TLS failure). The secret key never
  appears in a message, a field or a repr (it is scrubbed from foreign messages too).
* Timeouts are bounded (``connect_timeout_s``, ``read_timeout_s``); botocore's standard retry
  mode retries throttling and transient failures a few times.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import botocore.exceptions
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config

from shipyard.errors import RuntimeFailure

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client as Boto3S3Client

# What a missing bucket / key looks like, by operation (HEAD answers carry no error code).
_NOT_FOUND = {"404", "NoSuchBucket", "NoSuchKey", "NotFound"}
_ALREADY_MINE = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}
_BOTO_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


@dataclass(frozen=True)
class S3Endpoint:
    """Where an S3-compatible store is and how to sign in to it."""

    url: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str = "us-east-1"
    ca_file: Path | None = None
    verify_tls: bool = True
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("https://", "http://")):
            raise ValueError(f"S3 endpoint URL must start with https:// or http://: {self.url!r}")


@dataclass(frozen=True)
class S3Object:
    key: str
    size: int


class S3:
    """One store. Cheap to build; safe to share between threads (boto3 clients are)."""

    def __init__(self, endpoint: S3Endpoint) -> None:
        self.endpoint = endpoint
        verify: bool | str = endpoint.verify_tls
        if endpoint.verify_tls and endpoint.ca_file is not None:
            verify = str(endpoint.ca_file)
        self._client: Boto3S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint.url,
            aws_access_key_id=endpoint.access_key,
            aws_secret_access_key=endpoint.secret_key,
            region_name=endpoint.region,
            verify=verify,
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=endpoint.connect_timeout_s,
                read_timeout=endpoint.read_timeout_s,
                retries={"mode": "standard", "max_attempts": 3},
                signature_version="s3v4",
            ),
        )

    def ensure_bucket(self, bucket: str) -> bool:
        """Create ``bucket`` unless it exists (and is ours); True if it was created."""
        try:
            self._client.head_bucket(Bucket=bucket)
            return False
        except botocore.exceptions.ClientError as exc:
            if _code(exc) not in _NOT_FOUND:
                raise self._failure("check bucket", bucket, "", exc) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._failure("check bucket", bucket, "", exc) from exc
        args: dict[str, Any] = {"Bucket": bucket}
        if self.endpoint.region != "us-east-1":  # AWS refuses the constraint for us-east-1
            args["CreateBucketConfiguration"] = {"LocationConstraint": self.endpoint.region}
        try:
            self._client.create_bucket(**args)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in _ALREADY_MINE:
                return False
            raise self._failure("create bucket", bucket, "", exc) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._failure("create bucket", bucket, "", exc) from exc
        return True

    def put_file(self, bucket: str, key: str, path: Path) -> None:
        """Upload the file ``path`` as ``key`` (multipart above boto3's threshold)."""
        try:
            self._client.upload_file(str(path), bucket, key)
        except (OSError, S3UploadFailedError, *_BOTO_ERRORS) as exc:
            raise self._failure("upload", bucket, key, exc) from exc

    def get_file(self, bucket: str, key: str, path: Path) -> None:
        """Download ``key`` into ``path`` (replaced whole: boto3 writes a temporary file and
        renames it)."""
        try:
            self._client.download_file(bucket, key, str(path))
        except (OSError, *_BOTO_ERRORS) as exc:
            raise self._failure("download", bucket, key, exc) from exc

    def list(self, bucket: str, prefix: str = "") -> list[S3Object]:
        """Every object under ``prefix``, in key order."""
        return list(self._iter(bucket, prefix))

    def delete(self, bucket: str, key: str) -> None:
        """Delete ``key``; deleting a key that is not there is not an error (S3 semantics)."""
        try:
            self._client.delete_object(Bucket=bucket, Key=key)
        except _BOTO_ERRORS as exc:
            raise self._failure("delete", bucket, key, exc) from exc

    def _iter(self, bucket: str, prefix: str) -> Iterator[S3Object]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield S3Object(key=item["Key"], size=int(item["Size"]))
        except _BOTO_ERRORS as exc:
            raise self._failure("list", bucket, prefix, exc) from exc

    def _failure(self, operation: str, bucket: str, key: str, exc: Exception) -> RuntimeFailure:
        where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
        reason = _scrub(_describe(exc), self.endpoint.secret_key)
        return RuntimeFailure(
            f"S3 {operation} {where} at {self.endpoint.url} failed: {reason}",
            fields={
                "operation": operation,
                "bucket": bucket,
                "key": key,
                "endpoint": self.endpoint.url,
                "s3_code": _code(exc),
            },
        )


def _code(exc: Exception) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _describe(exc: Exception) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = error.get("Code") or "error"
        message = error.get("Message") or "no message"
        return f"{code} (HTTP {status}): {message}"
    if isinstance(exc, botocore.exceptions.SSLError):
        return f"TLS failure (is the CA file right?): {exc}"
    if isinstance(
        exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectionError
    ):
        return f"cannot connect: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "<redacted>") if secret else text
