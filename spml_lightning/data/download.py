"""Fetching, verifying and extracting the official archives of a data set.

Nothing here runs unless a datamodule is built with ``download=True``: data
sets are never downloaded implicitly. An archive is fetched with ``urllib``
(``http(s)://``, ``ftp://`` and ``file://`` URLs alike) into a ``.part`` file
next to its destination, its checksum is computed while it streams in and
compared with the published one, and only then is it renamed and extracted.
Extraction goes to a temporary folder inside the destination first and is
moved into place entry by entry, so an interrupted run never leaves a
half-extracted tree that looks complete, and files already on disk are never
overwritten.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from lightning.pytorch.utilities.rank_zero import rank_zero_info

__all__ = ["Archive", "download_archives", "extract_archive", "fetch_archive", "file_checksum"]

_CHUNK = 1 << 20
#: Progress is reported every 10% of the download, and at least every this many bytes.
_PROGRESS_BYTES = 500 << 20


@dataclass(frozen=True)
class Archive:
    """One published archive of a data set.

    Args:
        url: where the publisher serves it.
        md5: its published MD5 (hex), or None.
        sha256: its published SHA-256 (hex), or None; at least one checksum is required.
        provides: paths (relative to the data set root) the archive creates;
            it is downloaded only when one of them is missing.
    """

    url: str
    md5: str | None = None
    sha256: str | None = None
    provides: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (self.md5 or self.sha256):
            raise ValueError(f"Archive {self.url} needs a published md5 or sha256 checksum.")

    @property
    def filename(self) -> str:
        """The archive's file name, the last part of its URL's path."""
        return Path(urlsplit(self.url).path).name

    def url_from(self, mirror: str | None) -> str:
        """The URL to fetch: the official one, or the same file name under ``mirror``."""
        return self.url if not mirror else f"{mirror.rstrip('/')}/{self.filename}"

    @property
    def checksum(self) -> tuple[str, str]:
        """(algorithm, expected hex digest), SHA-256 preferred when both are known."""
        return ("sha256", self.sha256.lower()) if self.sha256 else ("md5", self.md5.lower())


def file_checksum(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_archive(archive: Archive, destination: Path, mirror: str | None = None) -> Path:
    """Download ``archive`` to ``destination`` and verify its checksum.

    Raises:
        OSError: when the URL cannot be read (with the URL in the message).
        ValueError: when the checksum differs (the download is deleted).
    """
    url = archive.url_from(mirror)
    algorithm, expected = archive.checksum
    part = destination.with_name(destination.name + ".part")
    digest = hashlib.new(algorithm)
    rank_zero_info(f"Downloading {url} to {destination}")
    try:
        # The timeout bounds each socket operation, not the (multi-GB) transfer.
        with (
            urllib.request.urlopen(url, timeout=60) as response,  # noqa: S310
            open(part, "wb") as out,
        ):
            total = int(response.headers.get("Content-Length") or 0)
            done, reported = 0, 0
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
                done += len(chunk)
                if done - reported >= max(total // 10, _PROGRESS_BYTES):
                    reported = done
                    of = f" of {total / 1e9:.2f} GB" if total else ""
                    rank_zero_info(f"  {archive.filename}: {done / 1e9:.2f} GB{of}")
    except (urllib.error.URLError, OSError) as err:
        part.unlink(missing_ok=True)
        raise OSError(
            f"Could not download {url} ({err}). Check the network, pass --data.mirror "
            f"with a folder or URL that holds {archive.filename}, or download it yourself into "
            f"{destination.parent}."
        ) from err
    found = digest.hexdigest()
    if found != expected:
        part.unlink(missing_ok=True)
        raise ValueError(
            f"{algorithm} of the file downloaded from {url} is {found}, expected the published "
            f"{expected}: the download is corrupt or not the official archive, so it was deleted. "
            "Try again, or use another mirror."
        )
    os.replace(part, destination)
    return destination


def _safe_members_zip(handle: zipfile.ZipFile, into: Path) -> None:
    base = into.resolve()
    for name in handle.namelist():
        target = (into / name).resolve()
        if target != base and base not in target.parents:
            raise ValueError(f"Refusing to extract {name!r}: it would land outside {into}.")


def _extract_tar(handle: tarfile.TarFile, into: Path) -> None:
    if hasattr(tarfile, "data_filter"):
        # Refuses absolute paths, links out of the tree and device files.
        handle.extractall(into, filter="data")
        return
    base = into.resolve()  # Python without extraction filters: check the names ourselves
    for member in handle.getmembers():
        target = (into / member.name).resolve()
        if (target != base and base not in target.parents) or member.isdev():
            raise ValueError(f"Refusing to extract {member.name!r} from the archive into {into}.")
        if member.issym() or member.islnk():
            raise ValueError(f"Refusing to extract the link {member.name!r} from the archive.")
    handle.extractall(into)


def extract_archive(archive_path: Path, into: Path) -> None:
    """Extract a tar (any compression) or zip archive into ``into``.

    The archive is unpacked into a temporary folder inside ``into`` and its
    entries are then moved into place; entries that already exist are kept
    as they are (their new copy is discarded), so nothing on disk is overwritten.
    """
    into.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=into))
    try:
        if zipfile.is_zipfile(archive_path):
            with zipfile.ZipFile(archive_path) as handle:
                _safe_members_zip(handle, tmp)
                handle.extractall(tmp)
        elif tarfile.is_tarfile(archive_path):
            with tarfile.open(archive_path) as handle:
                _extract_tar(handle, tmp)
        else:
            raise ValueError(f"{archive_path} is neither a tar nor a zip archive.")
        _merge_into(tmp, into)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _merge_into(source: Path, target: Path) -> None:
    for entry in os.scandir(source):
        destination = target / entry.name
        if not destination.exists():
            os.replace(entry.path, destination)
        elif entry.is_dir(follow_symlinks=False) and destination.is_dir():
            _merge_into(Path(entry.path), destination)


def download_archives(archives: Sequence[Archive], root: Path, mirror: str | None = None) -> None:
    """Bring every archive whose ``provides`` paths are missing under ``root`` into place.

    An archive file already in ``root`` (put there by the user) is verified and
    used, and kept afterwards; a downloaded one is deleted after extraction.
    """
    root.mkdir(parents=True, exist_ok=True)
    for archive in archives:
        if archive.provides and all((root / p).exists() for p in archive.provides):
            continue
        local = root / archive.filename
        downloaded = False
        if local.is_file():
            algorithm, expected = archive.checksum
            found = file_checksum(local, algorithm)
            if found != expected:
                raise ValueError(
                    f"{local} exists but its {algorithm} is {found}, not the published {expected}. "
                    "Delete it (a partial or foreign file) and run again to download it."
                )
            rank_zero_info(f"Using the archive already at {local}")
        else:
            fetch_archive(archive, local, mirror)
            downloaded = True
        rank_zero_info(f"Extracting {local} into {root}")
        extract_archive(local, root)
        if downloaded:
            local.unlink()
        missing = [p for p in archive.provides if not (root / p).exists()]
        if missing:
            raise FileNotFoundError(
                f"{archive.filename} was extracted into {root} but did not create "
                f"{', '.join(missing)}: it is not the archive this data set expects."
            )
