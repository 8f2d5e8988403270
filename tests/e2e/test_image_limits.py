"""Images too large to decode, loader errors that name their place, one rule for JPEG damage.

Issue 13, items 7 (decompression bombs), 8 (loader errors name shard and key), 9 (one
classifier for JPEG damage) and 5 (no raw DecompressionBombWarning text).
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import sys
import tarfile
import textwrap
import zlib
from pathlib import Path

import pytest
from PIL import Image
from tests.helpers import run_cli

from imagenet_prep.errors import DataError
from imagenet_prep.formats.tfrecord import spec as tfrecord_io
from imagenet_prep.loaders import iterate
from imagenet_prep.manifest import read_manifest

FORMATS = ("tfrecord", "webdataset", "imagefolder")


def build(src: Path, out: Path, *options: object) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "build",
        "--source",
        src,
        "--output",
        out,
        "--splits",
        "train",
        "--train-shards",
        "2",
        "--workers",
        "1",
        *options,
        timeout=600,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error:" in line]


def skipped(out: Path) -> dict[str, str]:
    entries = read_manifest(out).skipped
    assert isinstance(entries, list)
    return {s["image"]: s["reason"] for s in entries}


@pytest.fixture
def tree(small_extracted: Path, tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(small_extracted, src)
    return src


def victims(src: Path, count: int) -> list[Path]:
    """Training images of the copied tree to overwrite, from different classes."""
    files = sorted((src / "train").rglob("*.jpeg"))
    return files[3 : 3 + 13 * count : 13]


def _bomb() -> bytes:
    """A 331-byte JPEG whose frame header claims 60000x60000 (10 GiB of RGB)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buf, "JPEG", quality=75)
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 60000, 60000)
    return bytes(data)


BOMB = _bomb()


# --- item 7: a header over --max-pixels is refused at build time -------------------------------


def test_a_decompression_bomb_is_refused_under_the_error_policy(tree: Path, tmp_path: Path) -> None:
    (victim,) = victims(tree, 1)
    victim.write_bytes(BOMB)
    assert len(BOMB) < 400
    out = tmp_path / "out"
    proc = build(tree, out)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    (line,) = error_lines(proc.stderr)
    assert str(victim) in line and "60000x60000" in line and "--max-pixels" in line
    assert not (out / "manifest.json").exists()

    proc = build(tree, out, "--on-error", "skip")
    assert proc.returncode == 0, proc.stderr
    assert "60000x60000" in skipped(out)[str(victim)]


# --- items 7 and 8: the loaders check the header first and name the place ----------------------


@pytest.fixture(scope="module")
def built(small_extracted: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build of the small download in every format (copy it before changing it)."""
    out = tmp_path_factory.mktemp("built") / "out"
    proc = build(small_extracted, out, "--formats", ",".join(FORMATS))
    assert proc.returncode == 0, proc.stderr
    return out


def _replace_in_every_format(built: Path, out: Path, data: bytes) -> str:
    """A copy of ``built`` with one image, in each format, replaced by ``data`` (padded with
    zeros where a WebDataset member is longer); return the image's key."""
    shutil.copytree(built, out)
    shard = sorted((out / "tfrecord").glob("train-*-of-*"))[0]
    records = [tfrecord_io.decode_example(d) for _, d in tfrecord_io.iter_records(shard)]
    example = records[0]
    key = example["image/filename"].values[0].decode().rsplit(".", 1)[0]
    example["image/encoded"] = tfrecord_io.BytesList((data,))
    with shard.open("wb") as f:
        for ex in records:
            tfrecord_io.write_record(f, tfrecord_io.encode_example(ex))
    for tar_path in sorted((out / "webdataset").glob("train-*.tar")):
        with tarfile.open(tar_path) as tar:
            member = next(
                (m for m in tar if m.name.endswith(".jpg") and key in m.name.split("/")[-1]), None
            )
        if member is not None:
            assert member.size >= len(data)
            with tar_path.open("r+b") as f:
                f.seek(member.offset_data)
                f.write(data.ljust(member.size, b"\x00"))
    (image,) = (out / "imagefolder").rglob(f"{key}.*")
    image.write_bytes(data)
    return key


def test_loaders_refuse_a_bomb_before_allocating(built: Path, tmp_path: Path) -> None:
    """Under a 2 GB address-space limit: decoding 60000x60000 would need 10 GiB."""
    out = tmp_path / "out"
    key = _replace_in_every_format(built, out, BOMB)
    script = textwrap.dedent(
        f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
        from imagenet_prep.errors import DataError
        from imagenet_prep.loaders import iterate
        for fmt in {FORMATS!r}:
            for transform in (None, "train"):
                try:
                    for _ in iterate({str(out)!r}, "train", format=fmt, transform=transform):
                        pass
                except DataError as exc:
                    print(fmt, exc)
                else:
                    print(fmt, "no error")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 * len(FORMATS)
    for line in lines:
        fmt, _, message = line.partition(" ")
        place, _, rest = message.partition(f": {key}: ")
        assert rest.startswith("60000x60000 image"), line
        assert "over the limit of 89,478,485 pixels" in rest and "\n" not in rest
        assert f"/{fmt}/" in place and Path(place).exists(), line
        if fmt != "imagefolder":
            assert Path(place).name.startswith("train-"), line  # the shard


def test_loaders_take_a_raised_limit(built: Path, tmp_path: Path) -> None:
    """The limit is the loader's to raise, as --max-pixels is the build's: then libjpeg
    meets 331 bytes of data for 3.6 billion pixels, and Pillow refuses them."""
    out = tmp_path / "out"
    key = _replace_in_every_format(built, out, BOMB)
    with pytest.raises(DataError, match=f": {key}: ") as err:
        for _ in iterate(out, "train", format="webdataset", max_pixels=10**8):
            pass
    assert "60000x60000" in str(err.value)


def test_a_loader_error_names_the_shard_and_key(built: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    key = _replace_in_every_format(built, out, b"<html><body>404 Not Found</body></html>\n")
    for fmt in FORMATS:
        for decoder in ("auto", "pillow"):
            with pytest.raises(DataError) as err:
                for _ in iterate(out, "train", format=fmt, transform="eval", decoder=decoder):
                    pass
            text = str(err.value)
            place, _, rest = text.partition(f": {key}: ")
            assert rest.startswith("not an image Pillow can read (starts with b'<html>"), text
            assert Path(place).exists() and f"/{fmt}/" in place, text
            assert "BytesIO" not in text and "0x" not in text


# --- items 7 and 5: a PNG over Pillow's own limit; a large one within the memory budget --------


def _gray_png(width: int, height: int) -> bytes:
    """A gray PNG of zeros, written without holding its pixels (a few hundred KB)."""
    rows = zlib.compress(bytes(width + 1) * height, 9)

    def chunk(ctype: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(payload, zlib.crc32(ctype))
        return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_a_png_over_pillows_limit_gives_one_line(tree: Path, tmp_path: Path) -> None:
    """9500x9500 is over Pillow's 89,478,485 pixels (its DecompressionBombWarning)."""
    (victim,) = victims(tree, 1)
    victim.write_bytes(_gray_png(9500, 9500))
    out = tmp_path / "out"
    proc = build(tree, out)
    assert proc.returncode == 1
    assert "Warning" not in proc.stderr and "DOS attack" not in proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if victim.name in line]
    assert line in error_lines(proc.stderr) and "9500x9500 image" in line

    # Let in by a raised limit, it is re-encoded in strips, within the memory budget.
    proc = build(tree, out, "--max-pixels", 10**8)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr and "DOS attack" not in proc.stderr
    reencoded = read_manifest(out).reencoded
    assert isinstance(reencoded, list)
    assert [r["reason"] for r in reencoded if r["image"] == str(victim)] == ["png"]


# --- item 9: --decode-check and resizing judge JPEG damage alike -------------------------------


def _scan_cut_with_eoi(data: bytes) -> bytes:
    sos = data.index(b"\xff\xda")
    return data[: (sos + len(data)) // 2] + b"\xff\xd9"


def _bad_huffman_code(data: bytes) -> bytes:
    """Sixteen 1-bits (stuffed 0xFF bytes) near the end of the scan: no code is that long."""
    out = bytearray(data)
    out[-60:-52] = b"\xff\x00" * 4
    return bytes(out)


def test_decode_check_and_resizing_judge_jpeg_damage_alike(tree: Path, tmp_path: Path) -> None:
    stray, cut, huffman = victims(tree, 3)
    stray.write_bytes(stray.read_bytes()[:-2] + b"\x00" * 100 + b"\xff\xd9")
    cut.write_bytes(_scan_cut_with_eoi(cut.read_bytes()))
    huffman.write_bytes(_bad_huffman_code(huffman.read_bytes()))
    results = {}
    for name, options in {
        "decode-check": ["--decode-check"],
        "resize": ["--resize-shorter", "64"],
        "both": ["--decode-check", "--resize-longer", "300"],
    }.items():
        out = tmp_path / name
        proc = build(tree, out, "--on-error", "skip", *options)
        assert proc.returncode == 0, proc.stderr
        results[name] = skipped(out)
        files = {r["image"] for r in read_manifest(out).reencoded}
        assert str(stray) not in files
    assert results["decode-check"] == results["resize"] == results["both"]
    assert results["resize"] == {
        str(cut): f"{cut}: damaged JPEG data (Corrupt JPEG data: premature end of data segment)",
        str(huffman): f"{huffman}: damaged JPEG data (Corrupt JPEG data: bad Huffman code)",
    }
