"""Where the adapter endpoint finds adapters: names, the folder store, the S3 store (moto),
and the safe reading of a training run's model.tar.gz."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from lora_serving.adapter_store import (
    ARCHIVE_FILE,
    METADATA_FILE,
    WEIGHTS_FILE,
    BrokenAdapterError,
    FolderAdapterStore,
    InvalidAdapterNameError,
    S3AdapterStore,
    UnknownAdapterError,
    checked_name,
    parse_s3_uri,
)
from moto import mock_aws

BUCKET = "atelier-adapters-test"
PREFIX = "adapters/sdxl/"
WEIGHTS = b"weights of red-mug"
METADATA = {"base_model": "sdxl", "rank": 4}


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def store(s3: Any, tmp_path: Path) -> S3AdapterStore:
    return S3AdapterStore(BUCKET, PREFIX, s3, download_dir=tmp_path / "downloads")


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def training_archive(*extra: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    """A run's archive: the adapter at the root, beside what else a run writes."""
    return tar_bytes(
        [
            file_member(f"./{WEIGHTS_FILE}", WEIGHTS),
            file_member(METADATA_FILE, json.dumps(METADATA).encode()),
            file_member("samples/grid.png", b"png"),
            *extra,
        ]
    )


@pytest.mark.parametrize("name", ["red-mug", "a", "0", "sku-123-blue", "a" * 63])
def test_adapter_names_that_are_accepted(name: str) -> None:
    assert checked_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "-red", "Red-mug", "red_mug", "red/mug", "../red", "red.mug", "a" * 64, " red", 7, None],
)
def test_malformed_names_are_refused_before_any_s3_call(name: object, tmp_path: Path) -> None:
    # A client that answers nothing: any call at all would fail the test with a StubResponseError
    client = boto3.client("s3", region_name="us-east-1")
    with Stubber(client), pytest.raises(InvalidAdapterNameError, match="lowercase letters"):  # noqa: SIM117
        with store(client, tmp_path).fetched(name):  # type: ignore[arg-type]
            pass


def test_the_s3_store_reads_the_loose_files_and_removes_its_staging_folder(
    s3: Any, tmp_path: Path
) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}red-mug/{WEIGHTS_FILE}", Body=WEIGHTS)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}red-mug/{METADATA_FILE}", Body=json.dumps(METADATA))
    with store(s3, tmp_path).fetched("red-mug") as folder:
        assert (folder / WEIGHTS_FILE).read_bytes() == WEIGHTS
        assert json.loads((folder / METADATA_FILE).read_text()) == METADATA
        assert folder.parent == tmp_path / "downloads"
    assert not folder.exists()


def test_the_s3_store_reads_the_adapter_out_of_a_model_tar_gz(s3: Any, tmp_path: Path) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}red-mug/{ARCHIVE_FILE}", Body=training_archive())
    with store(s3, tmp_path).fetched("red-mug") as folder:
        assert sorted(path.name for path in folder.iterdir()) == [METADATA_FILE, WEIGHTS_FILE]
        assert (folder / WEIGHTS_FILE).read_bytes() == WEIGHTS


def _symlink() -> tuple[tarfile.TarInfo, None]:
    link = tarfile.TarInfo("link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return link, None


def _hardlink() -> tuple[tarfile.TarInfo, None]:
    link = tarfile.TarInfo("hard")
    link.type, link.linkname = tarfile.LNKTYPE, WEIGHTS_FILE
    return link, None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (file_member("../escape.txt", b"x"), "'../escape.txt' points outside the archive"),
        (file_member("/etc/cron.d/x", b"x"), "'/etc/cron.d/x' points outside the archive"),
        (file_member("samples/../../x", b"x"), "points outside the archive"),
        (_symlink(), "'link' is a link or special file"),
        (_hardlink(), "'hard' is a link or special file"),
    ],
)
def test_an_archive_with_escaping_names_or_links_is_refused_whole(
    s3: Any, tmp_path: Path, extra: tuple[tarfile.TarInfo, bytes | None], message: str
) -> None:
    s3.put_object(
        Bucket=BUCKET, Key=f"{PREFIX}red-mug/{ARCHIVE_FILE}", Body=training_archive(extra)
    )
    with pytest.raises(BrokenAdapterError, match=message) as refused:  # noqa: SIM117
        with store(s3, tmp_path).fetched("red-mug"):
            pass
    assert 'adapter "red-mug" cannot be used' in str(refused.value)
    # Nothing was written anywhere: the staging folder is gone and nothing escaped it
    assert list((tmp_path / "downloads").iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not a tar at all", "cannot read or unpack it"),
        (tar_bytes([file_member("nested/" + WEIGHTS_FILE, WEIGHTS)]), "holds no adapter_model"),
    ],
)
def test_an_unreadable_archive_or_one_without_the_weights_is_refused(
    s3: Any, tmp_path: Path, body: bytes, message: str
) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}red-mug/{ARCHIVE_FILE}", Body=body)
    with pytest.raises(BrokenAdapterError, match=message):  # noqa: SIM117
        with store(s3, tmp_path).fetched("red-mug"):
            pass


def test_an_unknown_adapter_names_itself_and_where_it_was_looked_for(
    s3: Any, tmp_path: Path
) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}red-mug/{WEIGHTS_FILE}", Body=WEIGHTS)
    with pytest.raises(UnknownAdapterError) as unknown:  # noqa: SIM117
        with store(s3, tmp_path).fetched("blue-vase"):
            pass
    assert str(unknown.value) == (
        f'unknown adapter "blue-vase": no {WEIGHTS_FILE} or {ARCHIVE_FILE} at '
        f"s3://{BUCKET}/{PREFIX}blue-vase/"
    )


def test_bad_metadata_is_refused_naming_the_adapter(s3: Any, tmp_path: Path) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}red-mug/{WEIGHTS_FILE}", Body=WEIGHTS)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}red-mug/{METADATA_FILE}", Body=b"[1, 2]")
    with pytest.raises(BrokenAdapterError, match=r'"red-mug".*must hold a JSON object'):  # noqa: SIM117
        with store(s3, tmp_path).fetched("red-mug"):
            pass


def test_access_denied_says_which_permissions_the_role_needs(tmp_path: Path) -> None:
    client = boto3.client("s3", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error("get_object", "AccessDenied", http_status_code=403)
        with pytest.raises(PermissionError, match="s3:ListBucket on the prefix"):  # noqa: SIM117
            with store(client, tmp_path).fetched("red-mug"):
                pass


def test_the_folder_store(tmp_path: Path) -> None:
    (tmp_path / "red-mug").mkdir()
    (tmp_path / "red-mug" / WEIGHTS_FILE).write_bytes(WEIGHTS)
    folders = FolderAdapterStore(tmp_path)
    with folders.fetched("red-mug") as folder:
        assert folder == tmp_path / "red-mug"
    with pytest.raises(UnknownAdapterError, match=f'"blue-vase".*{tmp_path}/blue-vase'):  # noqa: SIM117
        with folders.fetched("blue-vase"):
            pass
    with pytest.raises(InvalidAdapterNameError):  # noqa: SIM117
        with folders.fetched(".."):
            pass


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket-1/adapters/sdxl/", ("bucket-1", "adapters/sdxl/")),
        ("s3://bucket-1/adapters", ("bucket-1", "adapters/")),
        ("s3://bucket-1", ("bucket-1", "")),
    ],
)
def test_s3_uris(uri: str, expected: tuple[str, str]) -> None:
    assert parse_s3_uri(uri) == expected


def test_a_malformed_s3_uri_is_refused() -> None:
    with pytest.raises(ValueError, match="not an S3 URI like s3://bucket/adapters/"):
        parse_s3_uri("https://bucket/adapters/")
