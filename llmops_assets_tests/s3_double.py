"""A test double of S3: moto's server mode on 127.0.0.1, spoken to through the real s3fs/botocore
client as any S3-compatible service (MinIO, R2, AWS) would be. It implements the calls the store
makes, conditional writes (`If-None-Match: *`) included; it does not model S3's consistency,
latency, multipart limits or permissions."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MOTO_SERVER = Path(sys.executable).parent / "moto_server"


@contextmanager
def s3_double() -> Iterator[dict[str, str]]:
    """Start the double; yield the environment a client needs (endpoint, dummy credentials)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the S3 test double (moto_server) did not start") from None
                time.sleep(0.2)
        yield {"AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": "test-double", "AWS_SECRET_ACCESS_KEY": "test-double",
               "AWS_DEFAULT_REGION": "us-east-1"}
    finally:
        server.terminate()
        server.wait(10)


def new_bucket(environment: dict[str, str]) -> str:
    """A fresh bucket on the double; its s3:// URL."""
    import boto3

    name = f"llmops-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=environment["AWS_ENDPOINT_URL_S3"], region_name="us-east-1",
                 aws_access_key_id="test-double", aws_secret_access_key="test-double").create_bucket(Bucket=name)
    return f"s3://{name}"
