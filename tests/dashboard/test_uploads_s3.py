"""Uploads in an S3-compatible bucket (DJANGO_STORAGE=s3): any worker on any machine reads them.

The bucket is moto's in-process stand-in for S3; the storage is django-storages' S3Storage,
configured exactly as settings.py does for DJANGO_STORAGE=s3.
"""

from __future__ import annotations

import gzip

import boto3
import pytest
from moto import mock_aws

from dashboard.models import Import
from tests.dashboard.helpers import import_file

BUCKET = "audiences-uploads"


@pytest.fixture
def s3_uploads(settings, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    "bucket_name": BUCKET,
                    "region_name": "eu-west-1",
                    "location": "uploads",
                    "default_acl": None,
                    "file_overwrite": False,
                    "querystring_auth": True,
                },
            },
        }
        yield s3


def _keys(s3) -> list[str]:  # type: ignore[no-untyped-def]
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def test_an_upload_is_stored_in_the_bucket_and_validated_from_it(
    marketer, connection, work, s3_uploads
):
    rows = [f"{i:06d},{20 + i % 50}" for i in range(30_000)]
    content = ("user_id,age\n" + "\n".join(rows) + "\n").encode()
    imp = import_file(marketer, connection, work, content)
    assert imp.state == Import.VALIDATED, imp.error
    assert imp.valid_rows == 30_000
    (key,) = _keys(s3_uploads)
    assert key.startswith("uploads/") and key == f"uploads/{imp.file.name}"
    stored = s3_uploads.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert stored == content


def test_a_gzip_upload_is_read_back_from_the_bucket(marketer, connection, work, s3_uploads):
    content = gzip.compress(b"user_id\n" + b"".join(b"%07d\n" % i for i in range(5_000)))
    imp = import_file(marketer, connection, work, content, name="ids.csv.gz")
    assert imp.state == Import.VALIDATED, imp.error
    assert imp.valid_rows == 5_000
