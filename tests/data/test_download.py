"""download=True: fetch, verify, extract -- against local archives served by file:// URLs."""

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from spml_lightning.data import COCODataModule, CUBDataModule, VOCDataModule
from spml_lightning.data.download import Archive, download_archives, extract_archive

from community_reference import FIXTURES

MODULES = {"voc": VOCDataModule, "coco": COCODataModule, "cub": CUBDataModule}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def pack(fixture: Path, tops: list[str], path: Path) -> None:
    """An archive of the fixture's ``tops`` entries, in the format its file name says."""
    files = [
        p
        for top in tops
        for p in sorted((fixture / top).rglob("*")) + [fixture / top]
        if p.is_file()
    ]
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w") as handle:
            for file in files:
                handle.write(file, file.relative_to(fixture).as_posix())
    else:
        with tarfile.open(path, "w:gz" if path.suffix == ".tgz" else "w") as handle:
            for file in files:
                handle.add(file, file.relative_to(fixture).as_posix())


def serve(name: str, server: Path) -> tuple[Archive, ...]:
    """The module's official archives rebuilt from the fixture, with their own md5s."""
    server.mkdir(exist_ok=True)
    archives = []
    for official in MODULES[name].archives:
        tops = sorted({p.split("/")[0] for p in official.provides})
        path = server / official.filename
        pack(FIXTURES / name, tops, path)
        archives.append(Archive(url=path.as_uri(), md5=md5(path), provides=official.provides))
    return tuple(archives)


def make(name: str, root: Path, **kwargs):
    return MODULES[name](root=str(root), image_size=32, batch_size=4, num_workers=0, **kwargs)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_download_verify_extract(name, tmp_path, monkeypatch):
    monkeypatch.setattr(MODULES[name], "archives", serve(name, tmp_path / "server"))
    data = make(name, tmp_path / "data", download=True)
    data.prepare_data()
    data.setup("fit")
    expected = make(name, FIXTURES / name, cache=False)
    expected.setup("fit")
    np.testing.assert_array_equal(data.train_dataset.targets, expected.train_dataset.targets)
    np.testing.assert_array_equal(data.train_dataset.observed, expected.train_dataset.observed)
    # Downloaded archives are removed once extracted; nothing half-written is left.
    leftovers = [p.name for p in (tmp_path / "data").iterdir() if p.name != ".spml_cache"]
    assert not [
        n
        for n in leftovers
        if n.endswith((".tar", ".zip", ".tgz", ".part")) or n.startswith(".extract")
    ]
    data.prepare_data()  # everything present: nothing is fetched again


def test_never_downloads_unless_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(VOCDataModule, "archives", serve("voc", tmp_path / "server"))
    data = make("voc", tmp_path / "data")
    data.prepare_data()
    assert not (tmp_path / "data").exists()
    with pytest.raises(
        FileNotFoundError, match=r"(?s)does not exist.*VOCdevkit/VOC2012.*download=True"
    ):
        data.setup("fit")


def test_official_urls_and_checksums_are_the_published_ones():
    urls = [a.url for m in MODULES.values() for a in m.archives]
    assert "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar" in urls
    assert "http://images.cocodataset.org/zips/train2014.zip" in urls
    assert VOCDataModule.archives[0].md5 == "6cd6e144f989b92b3379bac3b3de84fd"
    assert CUBDataModule.archives[0].md5 == "97eceeb196236b17998738112f37df78"


def test_checksum_mismatch_deletes_the_download(tmp_path):
    serve("voc", tmp_path / "server")  # the mirror serves our archive, not the official one
    data = make("voc", tmp_path / "data", download=True, mirror=(tmp_path / "server").as_uri())
    with pytest.raises(ValueError, match=r"md5 .* expected the published 6cd6e144"):
        data.prepare_data()
    assert list((tmp_path / "data").iterdir()) == []


def test_unreachable_url_is_explained(tmp_path):
    data = make("voc", tmp_path / "data", download=True, mirror=(tmp_path / "nowhere").as_uri())
    with pytest.raises(OSError, match=r"Could not download .*VOCtrainval_11-May-2012.tar.*mirror"):
        data.prepare_data()


def test_archive_already_in_root_is_verified_used_and_kept(tmp_path, monkeypatch):
    archives = serve("cub", tmp_path / "server")
    root = tmp_path / "data"
    root.mkdir()
    local = root / "CUB_200_2011.tgz"
    local.write_bytes((tmp_path / "server" / "CUB_200_2011.tgz").read_bytes())
    already_local = Archive(
        url="file:///not/used/CUB_200_2011.tgz", md5=archives[0].md5, provides=archives[0].provides
    )
    monkeypatch.setattr(CUBDataModule, "archives", (already_local,))
    make("cub", root, download=True).prepare_data()
    assert local.is_file() and (root / "CUB_200_2011" / "images.txt").is_file()


def test_foreign_archive_in_root_is_refused_not_deleted(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "CUB_200_2011.tgz").write_bytes(b"not the archive")
    with pytest.raises(ValueError, match="not the published 97eceeb1"):
        make("cub", root, download=True).prepare_data()
    assert (root / "CUB_200_2011.tgz").read_bytes() == b"not the archive"


def test_extraction_keeps_existing_files(tmp_path):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as handle:
        for name, content in (("top/new.txt", b"new"), ("top/mine.txt", b"from the archive")):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            handle.addfile(info, io.BytesIO(content))
    (tmp_path / "out" / "top").mkdir(parents=True)
    (tmp_path / "out" / "top" / "mine.txt").write_text("the user's")
    extract_archive(archive, tmp_path / "out")
    assert (tmp_path / "out" / "top" / "mine.txt").read_text() == "the user's"
    assert (tmp_path / "out" / "top" / "new.txt").read_text() == "new"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["top"]


def test_extraction_refuses_paths_outside_the_root(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as handle:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 1
        handle.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(Exception, match="escaped|outside"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()


def test_archive_that_does_not_provide_the_layout_is_reported(tmp_path):
    archive = tmp_path / "server" / "x.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("other/file.txt", "x")
    spec = Archive(url=archive.as_uri(), md5=md5(archive), provides=("annotations",))
    with pytest.raises(FileNotFoundError, match="did not create annotations"):
        download_archives([spec], tmp_path / "data")
