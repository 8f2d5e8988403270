"""EXIF orientation is the same in every build (issue 14, item 2).

The fixture plants training images stored landscape with orientation 6. A plain build passes
them through with the tag; a resized build must carry the tag too, so that readers which turn
images upright (Pillow's ``exif_transpose``, DALI's decoder) show the same picture in both.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from tests.helpers import source_images

from imagenet_prep import BuildConfig, build
from imagenet_prep.fixture import EXIF_ORIENTATION, EXIF_SIZE

SHORTER = 160
# Measured on the fixture's planted image (n02077923_20279, 500x375 -> 213x160): 31.9 dB
# against the plain copy shown by Pillow or by DALI and downscaled with Lanczos (31.4-33.5 dB
# with Pillow's other filters); turned the wrong way it is 9.6 dB (upside down) to 12.3 dB
# (mirrored). The bound leaves 7 dB below the first and 13 dB above the second.
MIN_PSNR = 25.0


def _build(source: Path, out: Path, **options: object) -> Path:
    build(
        BuildConfig(
            source=source,
            output=out,
            formats=("imagefolder", "webdataset"),
            splits=("train",),
            train_shards=2,
            workers=2,
            **options,  # type: ignore[arg-type]
        )
    )
    return out


@pytest.fixture(scope="module")
def plain(small_download: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(small_download, tmp_path_factory.mktemp("exif_plain") / "out")


@pytest.fixture(scope="module")
def resized(small_download: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exif_resized") / "out"
    return _build(small_download, out, resize_shorter=SHORTER)


@pytest.fixture(scope="module")
def rotated(small_download: Path) -> list[str]:
    """The training images the fixture planted with an orientation tag (found by Pillow)."""
    names = []
    for name, data in source_images(small_download, validation=False).items():
        with Image.open(io.BytesIO(data)) as im:
            if im.getexif().get(0x0112) == EXIF_ORIENTATION:
                assert im.size == EXIF_SIZE
                names.append(name)
    assert names, "the fixture planted no exif_rotated image"
    return sorted(names)


def _folder_file(out: Path, name: str) -> Path:
    (path,) = (out / "imagefolder" / "train").glob(f"*/{name}")
    return path


def _wds_jpg(out: Path, name: str) -> bytes:
    key = name.rsplit(".", 1)[0]
    for shard in sorted((out / "webdataset").glob("train-*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name == f"{key}.jpg":
                    f = tar.extractfile(member)
                    assert f is not None
                    return f.read()
    raise AssertionError(f"{key}.jpg is in no WebDataset shard")


def _copies(plain: Path, resized: Path, name: str) -> dict[str, tuple[bytes, bytes]]:
    """(plain, resized) bytes of one image, from each format."""
    return {
        "imagefolder": (
            _folder_file(plain, name).read_bytes(),
            _folder_file(resized, name).read_bytes(),
        ),
        "webdataset": (_wds_jpg(plain, name), _wds_jpg(resized, name)),
    }


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * float(np.log10(255**2 / max(mse, 1e-9)))


def _same_picture(big: np.ndarray, small: np.ndarray) -> float:
    """Check that two displayed (H, W, 3) images are the same portrait picture at two sizes;
    the PSNR of ``small`` against ``big`` downscaled to its size."""
    (h0, w0), (h1, w1) = big.shape[:2], small.shape[:2]
    assert h0 > w0 and h1 > w1, f"not both portrait: {w0}x{h0} and {w1}x{h1}"
    assert min(w1, h1) == SHORTER
    assert abs(h1 / w1 - h0 / w0) <= 1 / min(w1, h1)
    reference = Image.fromarray(big).resize((w1, h1), Image.Resampling.LANCZOS)
    return _psnr(np.asarray(reference), small)


def _pil_shown(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def test_pillow_shows_the_resized_copy_as_the_plain_one(
    plain: Path, resized: Path, rotated: list[str]
) -> None:
    for name in rotated:
        for fmt, (full, small) in _copies(plain, resized, name).items():
            psnr = _same_picture(_pil_shown(full), _pil_shown(small))
            assert psnr > MIN_PSNR, (name, fmt, psnr)
            with Image.open(io.BytesIO(small)) as im:
                assert dict(im.getexif()) == {0x0112: EXIF_ORIENTATION}, (name, fmt)


@pytest.mark.dali
def test_dali_shows_the_resized_copy_as_the_plain_one(
    plain: Path, resized: Path, rotated: list[str]
) -> None:
    dali = pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed")
    import nvidia.dali.fn as fn

    @dali.pipeline_def(batch_size=2, num_threads=1, device_id=None)  # type: ignore[untyped-decorator]
    def from_files(files: list[str]):  # type: ignore[no-untyped-def]
        jpegs, _ = fn.readers.file(files=files)
        return fn.decoders.image(jpegs, device="cpu")  # applies EXIF orientation by default

    @dali.pipeline_def(batch_size=2, num_threads=1, device_id=None)  # type: ignore[untyped-decorator]
    def from_bytes(blobs: list[bytes]):  # type: ignore[no-untyped-def]
        batch = [np.frombuffer(b, np.uint8) for b in blobs]
        jpegs = fn.external_source(source=lambda: batch, batch=True)
        return fn.decoders.image(jpegs, device="cpu")

    def run(pipe: object) -> list[np.ndarray]:
        pipe.build()  # type: ignore[attr-defined]
        (images,) = pipe.run()  # type: ignore[attr-defined]
        return [np.asarray(images.at(i)) for i in range(2)]

    for name in rotated:
        files = [str(_folder_file(out, name)) for out in (plain, resized)]
        blobs = [_wds_jpg(out, name) for out in (plain, resized)]
        shown = {
            "imagefolder": run(from_files(files=files)),
            "webdataset": run(from_bytes(blobs=blobs)),
        }
        for fmt, (full, small) in shown.items():
            psnr = _same_picture(full, small)
            assert psnr > MIN_PSNR, (name, fmt, psnr)
            # DALI turns the images as Pillow does.
            pil_full, pil_small = (_pil_shown(b) for b in _copies(plain, resized, name)[fmt])
            assert full.shape == pil_full.shape and small.shape == pil_small.shape
