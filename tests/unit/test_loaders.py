"""Loaders without a build: order and sharding arithmetic, crops, decoders."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tests.helpers import encode

from imagenet_prep.errors import DataError
from imagenet_prep.loaders import LoaderConfig, iterate
from imagenet_prep.loaders.decode import make_decoder
from imagenet_prep.loaders.iterator import ImageNetIterator
from imagenet_prep.loaders.options import DecodeOptions, ReadOptions
from imagenet_prep.loaders.order import (
    BufferShuffle,
    Consumer,
    consumer_range,
    epoch_length,
    unit_order,
)
from imagenet_prep.loaders.transforms import (
    Crop,
    center_crop,
    crop_resize,
    distorted_bbox_crop,
    make_transform,
    random_resized_crop,
)


@pytest.mark.parametrize("total", [0, 1, 7, 48, 101])
@pytest.mark.parametrize("world,workers", [(1, 1), (2, 3), (4, 2), (3, 5), (8, 1)])
def test_consumers_cover_the_epoch_once(total: int, world: int, workers: int) -> None:
    covered: list[int] = []
    for rank in range(world):
        sizes = []
        for worker in range(workers):
            lo, hi = consumer_range(total, Consumer(rank, world, worker, workers))
            covered.extend(range(lo, hi))
            sizes.append(hi - lo)
        assert max(sizes) - min(sizes) <= 1
    assert covered == list(range(total))


@pytest.mark.parametrize("total,world", [(10, 4), (3, 8), (48, 5), (12, 4)])
def test_pad_and_drop_give_every_rank_the_same_count(total: int, world: int) -> None:
    for balance in ("pad", "drop"):
        counts = set()
        seen: list[int] = []
        for rank in range(world):
            lo, hi = consumer_range(total, Consumer(rank, world), balance)
            counts.add(hi - lo)
            seen.extend(p % total for p in range(lo, hi))
        assert len(counts) == 1
        assert len(seen) == epoch_length(total, world, balance)
        if balance == "pad":
            assert set(seen) == set(range(total))
        else:
            assert len(set(seen)) == len(seen)


def test_consumer_and_balance_are_validated() -> None:
    with pytest.raises(ValueError, match="rank 2"):
        Consumer(rank=2, world_size=2)
    with pytest.raises(ValueError, match="worker"):
        Consumer(worker=1, num_workers=1)
    with pytest.raises(ValueError, match="balance"):
        epoch_length(10, 2, "even")


def test_unit_order_depends_on_seed_and_epoch() -> None:
    a = unit_order(100, 1, 0, True).tolist()
    assert a == unit_order(100, 1, 0, True).tolist()
    assert a != unit_order(100, 1, 1, True).tolist()
    assert a != unit_order(100, 2, 0, True).tolist()
    assert sorted(a) == list(range(100))


@pytest.mark.parametrize("n,size", [(0, 5), (1, 5), (50, 1), (50, 7), (200, 64), (10, 100)])
def test_buffer_shuffle_is_a_bounded_permutation(n: int, size: int) -> None:
    out = list(BufferShuffle(n, size, "x"))
    assert sorted(out) == list(range(n))
    assert all(p < i + size for i, p in enumerate(out))
    assert out == list(BufferShuffle(n, size, "x"))


def test_buffer_shuffle_replay_knows_what_is_left() -> None:
    full = list(BufferShuffle(100, 10, "k"))
    s = BufferShuffle(100, 10, "k")
    s.skip(37)
    left = set(s.buffer) | set(range(s.frontier, 100))
    assert left == set(full[37:])
    assert list(s) == full[37:]


def test_random_resized_crop_stays_inside_and_matches_torchvision() -> None:
    torch = pytest.importorskip("torch")
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(0)
    rng = random.Random(0)
    ours, theirs = [], []
    for _ in range(3000):
        h, w = rng.randint(100, 600), rng.randint(100, 600)
        c = random_resized_crop(h, w, rng)
        assert c.top >= 0 and c.top + c.height <= h and c.left >= 0 and c.left + c.width <= w
        assert c.height > 0 and c.width > 0
        ours.append((c.height * c.width / (h * w), c.width / c.height))
        _, _, th, tw = RandomResizedCrop.get_params(
            torch.empty(1, h, w), scale=[0.08, 1.0], ratio=[3 / 4, 4 / 3]
        )
        theirs.append((th * tw / (h * w), tw / th))
    a, b = np.array(ours), np.array(theirs)
    assert a[:, 0].min() >= 0.07 and a[:, 0].max() <= 1.0  # 0.08 up to rounding
    assert np.allclose(a.mean(axis=0), b.mean(axis=0), atol=0.02)
    assert np.allclose(a.std(axis=0), b.std(axis=0), atol=0.02)


def test_distorted_bbox_crop_covers_a_box_or_takes_the_image() -> None:
    rng = random.Random(1)
    box = (0.6, 0.6, 0.9, 0.95)  # xmin, ymin, xmax, ymax
    h, w = 375, 500
    bx0, by0, bx1, by1 = int(box[0] * w), int(box[1] * h), int(box[2] * w), int(box[3] * h)
    whole = 0
    for _ in range(500):
        c = distorted_bbox_crop(h, w, [box], rng)
        if c == Crop(0, 0, h, w):
            whole += 1
            continue
        area = c.height * c.width / (h * w)
        assert 0.05 - 1e-3 <= area <= 1.0
        assert 0.74 <= c.width / c.height <= 1.34 + 1 / c.height
        iw = min(c.left + c.width, bx1) - max(c.left, bx0)
        ih = min(c.top + c.height, by1) - max(c.top, by0)
        assert iw > 0 and ih > 0 and iw * ih / ((bx1 - bx0) * (by1 - by0)) >= 0.1
    assert whole < 50


def test_center_crop_is_resize_then_center_crop() -> None:
    # Resize(256) then CenterCrop(224) of 375x500 keeps the centre 328x328 of the original.
    assert center_crop(375, 500, 224) == Crop(24, 86, 328, 328)
    c = center_crop(500, 375, 64)
    assert c.height == c.width and c.top * 2 + c.height in (500, 501)


def test_crop_resize_flips_and_fills_out() -> None:
    image = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    crop = Crop(10, 20, 200, 250)
    plain = crop_resize(image, crop, 64)
    out = np.zeros((64, 64, 3), np.uint8)
    flipped = crop_resize(image, crop, 64, flip=True, out=out)
    assert flipped is out and plain.shape == (64, 64, 3) and plain.dtype == np.uint8
    assert np.array_equal(flipped, plain[:, ::-1])
    # A crop more than twice the output goes through the area pre-shrink: flat stays flat.
    flat = np.full((600, 800, 3), 77, np.uint8)
    assert (crop_resize(flat, Crop(0, 0, 600, 800), 32) == 77).all()


def test_transforms_give_the_requested_shape() -> None:
    image = np.zeros((120, 90, 3), np.uint8)
    for name in ("train", "train-inception", "eval"):
        t = make_transform(name, 48)
        assert t is not None
        out = t(image, [(0.1, 0.1, 0.5, 0.5)], random.Random(0))
        assert out.shape == (48, 48, 3) and out.dtype == np.uint8
    assert make_transform(None, 48) is None
    with pytest.raises(ValueError, match="transform"):
        make_transform("random", 48)


@pytest.mark.parametrize("decoder", ["auto", "simplejpeg", "cv2", "pillow"])
def test_decoders_give_rgb_for_every_kind_of_image(decoder: str) -> None:
    decode = make_decoder(decoder)
    rgb = Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8), "RGB"
    )
    reference = np.asarray(Image.open(io.BytesIO(encode(rgb, "JPEG", quality=95))))
    images = {
        "rgb": encode(rgb, "JPEG", quality=95),
        "gray": encode(rgb.convert("L"), "JPEG"),
        "cmyk": encode(rgb.convert("CMYK"), "JPEG"),
        "png": encode(rgb, "PNG"),
        "rgba png": encode(rgb.convert("RGBA"), "PNG"),
        "progressive": encode(rgb, "JPEG", progressive=True),
    }
    for name, data in images.items():
        out = decode(data)
        assert out.shape == (30, 40, 3) and out.dtype == np.uint8, name
    assert np.abs(decode(images["rgb"]).astype(int) - reference).mean() < 2
    assert np.array_equal(decode(images["png"]), np.asarray(rgb))
    with pytest.raises(DataError):
        decode(b"not an image")
    with pytest.raises(ValueError, match="decoder"):
        make_decoder("libjpeg")


def test_crop_random_is_a_function_of_its_key() -> None:
    from imagenet_prep.loaders.rng import CropRandom

    a, b, c = CropRandom("crop/0/0/1"), CropRandom("crop/0/0/1"), CropRandom("crop/0/0/2")
    first = [a.random() for _ in range(20)]
    assert first == [b.random() for _ in range(20)]
    assert first != [c.random() for _ in range(20)]
    draws = [CropRandom(f"k{i}").random() for i in range(4000)]
    assert all(0.0 <= x < 1.0 for x in draws)
    assert abs(sum(draws) / len(draws) - 0.5) < 0.02
    ints = [CropRandom(f"k{i}").randint(3, 5) for i in range(3000)]
    assert set(ints) == {3, 4, 5}
    assert all(abs(ints.count(v) - 1000) < 150 for v in (3, 4, 5))
    assert CropRandom("x").randrange(1) == 0
    with pytest.raises(ValueError):
        CropRandom("x").randrange(0)


README = Path(__file__).resolve().parents[2] / "README.md"


def test_loader_config_is_validated_once() -> None:
    config = LoaderConfig("out", "val")  # type: ignore[arg-type]
    assert (config.root, config.split, config.shuffle) == (Path("out"), "validation", False)
    assert LoaderConfig(Path("out"), "train").shuffle is True
    assert LoaderConfig(Path("out"), "train", transform="train-inception").boxes
    assert config.consumer(1, 2) == Consumer(0, 1, 1, 2)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"format": "lmdb"}, "^format must be one of"),
        ({"transform": "random"}, "^transform must be None or one of"),
        ({"image_size": 0}, "^image_size must be at least 1, not 0"),
        ({"buffer_size": 0}, "^buffer_size must be at least 1"),
        ({"balance": "even"}, "^balance must be one of"),
        ({"decoder": "libjpeg"}, "^decoder must be one of"),
        ({"max_pixels": 0}, "^max_pixels must be at least 1"),
        ({"rank": 2, "world_size": 2}, "^rank 2 is not in a world of size 2"),
        ({"transform": "eval", "batch_size": 0}, "^batch_size must be at least 1"),
        ({"batch_size": 4}, r"^batching needs a transform \(images of one size\)"),
    ]
    for options, message in bad:
        with pytest.raises(ValueError, match=message):
            LoaderConfig(Path("out"), "train", **options)
    with pytest.raises(ValueError, match="split"):
        LoaderConfig(Path("out"), "holdout")


def test_the_keyword_options_are_the_configs_and_no_others() -> None:
    fields = {f.name for f in dataclasses.fields(LoaderConfig)}
    assert set(ReadOptions.__annotations__) <= set(DecodeOptions.__annotations__) <= fields
    # Refused before anything is read (and before TensorFlow is imported).
    from imagenet_prep.loaders.tf import dataset

    with pytest.raises(TypeError, match=r"^iterate\(\) got an unexpected keyword .*'drop_last'"):
        iterate("out", "train", transform="eval", drop_last=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"^dataset\(\) got an unexpected keyword .*'decoder'"):
        dataset("out", "train", decoder="cv2")  # type: ignore[call-arg]


class _Reader:
    """A reader of 10 + 7 records that is never read."""

    format = "tfrecord"
    split = "train"
    sizes = np.array([10, 7], dtype=np.int64)


def _documented_defaults(name: str) -> dict[str, Any]:
    """``name=default`` of the README's signature line of ``name``."""
    match = re.search(rf"`{name}\((.*?)\)`", README.read_text("utf-8"), flags=re.S)
    assert match, name
    return {k: ast.literal_eval(v.strip()) for k, v in re.findall(r"(\w+)=([^,]+)", match[1])}


def _defaults_in_force(function: Any) -> dict[str, Any]:
    """Explicit keyword defaults, and LoaderConfig's for the options passed on to it."""
    explicit = {
        p.name: p.default
        for p in inspect.signature(function).parameters.values()
        if p.default is not inspect.Parameter.empty
    }
    config = {f.name: f.default for f in dataclasses.fields(LoaderConfig)}
    return {**config, **explicit}


def test_the_readme_signatures_give_the_defaults_in_force(monkeypatch: pytest.MonkeyPatch) -> None:
    from imagenet_prep.loaders import tf

    for name, function in [("iterate", iterate), ("dataset", tf.dataset)]:
        in_force = _defaults_in_force(function)
        for key, value in _documented_defaults(name).items():
            assert in_force[key] == value, (name, key)
    torch_loaders = pytest.importorskip("imagenet_prep.loaders.torch")
    monkeypatch.setattr(LoaderConfig, "open_reader", lambda self: _Reader())
    loader = torch_loaders.ImageNetLoader("out", "train", batch_size=4)
    in_force = _defaults_in_force(torch_loaders.ImageNetLoader)
    for key, value in _documented_defaults("ImageNetLoader").items():
        got = getattr(loader.config, key) if key == "transform" else in_force[key]
        assert got == value, key


def test_one_state_for_the_iterator_and_the_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    config = LoaderConfig(Path("out"), "train", seed=3, world_size=2, rank=1)
    it = ImageNetIterator(config, config.consumer(0, 2), 4, reader=_Reader())  # type: ignore[arg-type]
    state = it.state_dict()
    assert state == {
        "format": "tfrecord",
        "split": "train",
        "seed": 3,
        "shuffle": True,
        "buffer_size": 256,
        "balance": "none",
        "rank": 1,
        "world_size": 2,
        "worker": 0,
        "num_workers": 2,
        "total": 17,
        "epoch": 4,
        "yielded": 0,
    }
    it.set_epoch(0)
    it.load_state_dict({**state, "yielded": 3})
    assert (it.epoch, it.yielded) == (4, 3)
    with pytest.raises(ValueError, match="of another configuration: seed 4 != 3, total 9 != 17"):
        it.load_state_dict({**state, "seed": 4, "total": 9})
    with pytest.raises(ValueError, match="the consumer is rank 0 of 1, the config rank 1 of 2"):
        ImageNetIterator(config, Consumer(), reader=_Reader())  # type: ignore[arg-type]
    torch_loaders = pytest.importorskip("imagenet_prep.loaders.torch")
    monkeypatch.setattr(LoaderConfig, "open_reader", lambda self: _Reader())
    loader = torch_loaders.ImageNetLoader("out", "train", batch_size=4, world_size=2, rank=1)
    state = loader.state_dict()
    assert set(state) == {
        *("format", "split", "seed", "shuffle", "buffer_size", "balance", "world_size"),
        *("total", "num_workers", "batch_size", "drop_last", "epoch", "done", "next"),
    }
    loader.load_state_dict({**state, "epoch": 2, "done": {"0": 4}, "next": 0})
    assert loader.epoch == 2 and loader.state_dict()["done"] == {"0": 4}
    with pytest.raises(ValueError, match="batch_size 8 != 4"):
        loader.load_state_dict({**state, "batch_size": 8})
