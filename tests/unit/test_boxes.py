"""The reference scripts' box rules (process_bounding_boxes.py) on small annotation files."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imagenet_prep.boxes import (
    Annotation,
    BoxObject,
    BoxResult,
    csv_line,
    csv_unsafe,
    normalize_box,
    normalize_boxes,
    parse_annotation,
    record_box,
)
from imagenet_prep.errors import DataError
from imagenet_prep.labels import load_synsets
from imagenet_prep.sources import SourceLayout, boxtable, discover, load_boxes, open_source

WNID = "n01440764"
OTHER = "n01443537"  # another challenge synset
SOURCE = "ILSVRC2012_bbox_train_v2.tar.gz:n01440764/n01440764_10026.xml"
CHALLENGE = load_synsets()


def _object(name: str, xmin: object, ymin: object, xmax: object, ymax: object) -> str:
    return (
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>0</difficult><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
        f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
    )


def _xml(*objects: str, width: object = 250, height: object = 200, filename: str = "x") -> bytes:
    return (
        f"<annotation><folder>{WNID}</folder><filename>{filename}</filename>"
        "<source><database>ILSVRC_2012</database></source>"
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
        f"<segmented>0</segmented>{''.join(objects)}</annotation>\n"
    ).encode()


def _boxes(*objects: str, width: object = 250, height: object = 200) -> BoxResult:
    data = _xml(*objects, width=width, height=height)
    return normalize_boxes(parse_annotation(data, SOURCE), WNID, CHALLENGE)


def test_parse_example() -> None:
    data = b"""<annotation>
\t<folder>n01440764</folder>
\t<filename>n01440764_10026</filename>
\t<source>
\t\t<database>ILSVRC_2012</database>
\t</source>
\t<size>
\t\t<width>250</width>
\t\t<height>250</height>
\t\t<depth>3</depth>
\t</size>
\t<segmented>0</segmented>
\t<object>
\t\t<name>n01440764</name>
\t\t<pose>Unspecified</pose>
\t\t<truncated>0</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox>
\t\t\t<xmin>71</xmin>
\t\t\t<ymin>102</ymin>
\t\t\t<xmax>159</xmax>
\t\t\t<ymax>180</ymax>
\t\t</bndbox>
\t</object>
</annotation>
"""
    annotation = parse_annotation(data, SOURCE)
    assert annotation == Annotation(250, 250, (BoxObject(WNID, 71, 102, 159, 180),))
    result = normalize_boxes(annotation, WNID, CHALLENGE)
    assert result == BoxResult(((0.284, 0.408, 0.636, 0.72),), 0, 0)
    assert csv_line("n01440764_10026", result.kept[0]) == (
        "n01440764_10026.JPEG,0.2840,0.4080,0.6360,0.7200"
    )
    assert record_box(result.kept[0]) == (0.284, 0.408, 0.636, 0.72)


def test_normalized_by_the_xml_size_not_the_image() -> None:
    result = _boxes(_object(WNID, 50, 20, 100, 40), width=500, height=400)
    assert result.kept == ((0.1, 0.05, 0.2, 0.1),)


def test_reversed_coordinates_are_swapped() -> None:
    result = _boxes(_object(WNID, 200, 150, 50, 20))
    assert result.kept == ((50 / 250, 20 / 200, 200 / 250, 150 / 200),)


def test_out_of_range_is_clamped() -> None:
    result = _boxes(_object(WNID, -30, -1, 300, 260))
    assert result.kept == ((0.0, 0.0, 1.0, 1.0),)
    assert csv_line("s", result.kept[0]) == "s.JPEG,0.0000,0.0000,1.0000,1.0000"


def test_no_area_is_dropped() -> None:
    result = _boxes(
        _object(WNID, 50, 20, 50, 100),  # zero width
        _object(WNID, 10, 70, 60, 70),  # zero height
        _object(WNID, 260, 10, 300, 50),  # entirely right of the image: clamped to x = 1
        _object(WNID, 10, -50, 60, -10),  # entirely above: clamped to y = 0
        _object(WNID, 10, 10, 60, 50),
    )
    assert result.kept == ((10 / 250, 10 / 200, 60 / 250, 50 / 200),)
    assert (result.dropped_empty, result.dropped_other_synset) == (4, 0)


def test_other_challenge_synset_is_dropped_non_synset_names_kept() -> None:
    result = _boxes(
        _object(OTHER, 10, 10, 60, 50),
        _object("Scottish_deerhound", 20, 20, 70, 60),
        _object("n99999999", 30, 30, 80, 70),  # a wnid, but not a challenge synset
        _object(WNID, 40, 40, 90, 80),
    )
    assert [b[0] for b in result.kept] == [20 / 250, 30 / 250, 40 / 250]
    assert (result.dropped_other_synset, result.dropped_empty) == (1, 0)


def test_each_object_judged_by_its_own_name() -> None:
    """The reference scripts used the first object's name for every box; we use each object's."""
    result = _boxes(_object(OTHER, 10, 10, 60, 50), _object(WNID, 20, 20, 70, 60))
    assert len(result.kept) == 1 and result.dropped_other_synset == 1
    result = _boxes(_object(WNID, 10, 10, 60, 50), _object(OTHER, 20, 20, 70, 60))
    assert len(result.kept) == 1 and result.dropped_other_synset == 1


def test_synset_rule_counts_before_area_rule() -> None:
    result = _boxes(_object(OTHER, 10, 10, 10, 50))
    assert (result.kept, result.dropped_other_synset, result.dropped_empty) == ((), 1, 0)


def test_challenge_may_be_any_container() -> None:
    annotation = parse_annotation(_xml(_object(OTHER, 10, 10, 60, 50)), SOURCE)
    assert len(normalize_boxes(annotation, WNID, {WNID}).kept) == 1
    assert len(normalize_boxes(annotation, WNID, {WNID, OTHER}).kept) == 0


def test_placeholder_filename_is_ignored() -> None:
    annotation = parse_annotation(_xml(_object(WNID, 1, 2, 3, 4), filename="%s"), SOURCE)
    assert annotation.objects == (BoxObject(WNID, 1, 2, 3, 4),)
    assert csv_line("n01440764_10026", (0.0, 0.0, 1.0, 1.0)).startswith("n01440764_10026.JPEG,")


def test_several_objects_keep_their_order() -> None:
    objects = [_object(WNID, 10 * i, 5 * i, 10 * i + 50, 5 * i + 40) for i in range(6)]
    result = _boxes(*objects)
    assert [b[0] for b in result.kept] == [10 * i / 250 for i in range(6)]


def test_fractional_coordinates_are_truncated() -> None:
    annotation = parse_annotation(_xml(_object(WNID, "10.9", " 20.5 ", "99.99", "150.0")), SOURCE)
    assert annotation.objects[0] == BoxObject(WNID, 10, 20, 99, 150)
    annotation = parse_annotation(_xml(_object(WNID, 1, 2, 3, 4), width="500.7"), SOURCE)
    assert annotation.width == 500


def test_objects_without_a_box_carry_none() -> None:
    data = _xml("<object><name>n01440764</name></object>", _object(WNID, 1, 2, 30, 40))
    assert len(parse_annotation(data, SOURCE).objects) == 1
    assert parse_annotation(_xml(), SOURCE).objects == ()
    assert _boxes() == BoxResult((), 0, 0)


def test_missing_name_is_kept() -> None:
    data = _xml(
        "<object><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>"
        "</object>"
    )
    annotation = parse_annotation(data, SOURCE)
    assert annotation.objects[0].name == ""
    assert len(normalize_boxes(annotation, WNID, CHALLENGE).kept) == 1


def test_double_precision_in_csv_and_four_decimals_in_records() -> None:
    box = normalize_box(BoxObject(WNID, 1, 2, 2, 3), 3, 3)
    assert box == (1 / 3, 2 / 3, 2 / 3, 1.0)
    assert csv_line("a_1", box) == "a_1.JPEG,0.3333,0.6667,0.6667,1.0000"
    assert record_box(box) == (0.3333, 0.6667, 0.6667, 1.0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<annotation><size><width>1</width>", "malformed XML"),
        (b"", "malformed XML"),
        (b"\x00\x01garbage", "malformed XML"),
        (b"<html><body>404</body></html>", "root element is <html>, not <annotation>"),
        (_xml(width=0), "<size> is 0x200"),
        (_xml(height="0.4"), "<size> is 250x0"),
        (_xml(width=-5), "<size> is -5x200"),
        (b"<annotation><object/></annotation>", "no <size> element"),
        (_xml(width=""), "<size><width> is missing or empty"),
        (_xml(height="tall"), "<size><height> is not a number: 'tall'"),
        (_xml(_object(WNID, 1, 2, 3, 4), _object(WNID, 1, "abc", 3, 4)), "object 2 <ymin>"),
        (_xml(_object(WNID, 1, 2, "inf", 4)), "object 1 <xmax> is not a number: 'inf'"),
        (_xml(_object(WNID, 1, 2, "nan", 4)), "object 1 <xmax> is not a number"),
        (_xml("<object><bndbox><xmin>1</xmin></bndbox></object>"), "object 1 <ymin> is missing"),
    ],
)
def test_bad_files_raise_data_error_naming_the_source(data: bytes, message: str) -> None:
    with pytest.raises(DataError) as err:
        parse_annotation(data, SOURCE)
    text = str(err.value)
    assert text.startswith(SOURCE + ": ") and message in text and "\n" not in text


def test_parsing_spread_over_workers_gives_the_same_table(
    small_download: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches parsed elsewhere and merged in any order make the same table and CSV."""
    source = open_source(discover(small_download))
    alone = load_boxes(source.box_xmls("train"), CHALLENGE)
    monkeypatch.setattr(boxtable, "BOX_BATCH", 5)

    def backwards(fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        return iter([fn(item) for item in items][::-1])

    spread = load_boxes(source.box_xmls("train"), CHALLENGE, map_unordered=backwards)
    assert alone is not None and spread is not None
    assert len(alone) > 5 * 3  # several batches
    assert spread.csv_bytes() == alone.csv_bytes()
    assert spread.stats == alone.stats
    assert spread.skipped == alone.skipped
    assert [spread.get(k) for k in sorted(alone.keys())] == [
        alone.get(k) for k in sorted(alone.keys())
    ]


def test_csv_unsafe_finds_commas_quotes_and_every_break_of_splitlines() -> None:
    """The CSV's readers split lines with ``str.splitlines``, then at commas."""
    chars = [chr(c) for c in range(0x10000)]
    breaks = {c for c in chars if len(f"a{c}b".splitlines()) > 1}
    assert {"\n", "\r", "\u2028"} <= breaks
    assert {c for c in chars if csv_unsafe(f"n01440764_1{c}2.JPEG")} == breaks | {",", '"'}
    assert {csv_unsafe(f"a{c}b") for c in breaks} == {"a line break"}


def test_a_box_file_name_the_csv_cannot_hold_is_refused_or_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "bounding_boxes" / WNID
    folder.mkdir(parents=True)
    (folder / f"{WNID}_1.xml").write_bytes(_xml(_object(WNID, 1, 2, 30, 40)))
    bad = folder / f"{WNID}_2,3.xml"
    bad.write_bytes(_xml(_object(WNID, 1, 2, 30, 40)))
    layout = SourceLayout("extracted", tmp_path, boxes={"train": tmp_path / "bounding_boxes"})
    source = open_source(layout)
    with pytest.raises(DataError) as err:
        load_boxes(source.box_xmls("train"), CHALLENGE)
    assert str(err.value) == (
        f"{bad}: a comma in the file name, which the bounding-box CSV cannot hold (rename the file)"
    )
    table = load_boxes(source.box_xmls("train"), CHALLENGE, skip_bad=True)
    assert table is not None and table.keys() == [f"{WNID}_1"]
    assert [where for where, _ in table.skipped] == [str(bad)]
