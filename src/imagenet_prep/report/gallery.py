"""The pictures the page shows besides its plots: thumbnails of the re-encoded and skipped
images, and the contact sheets, written into the report's folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..labels import Synsets
from ..manifest import Manifest
from ..storage import is_url
from .folder import save_image
from .page import ContactSheet, Thumb
from .scan import SplitScan
from .select import key_of
from .skipped import skipped_images
from .thumbs import Sheet, contact_sheet, thumbnail


def reencoded(folder: Path, manifest: Manifest, scans: dict[str, SplitScan]) -> list[Thumb]:
    """Every image the manifest lists as re-encoded, with the thumbnail the scan made."""
    made = {key: data for s in scans.values() for key, data in s.thumbs.items()}
    out = []
    for entry in manifest.reencoded:
        image = entry.get("image", "")
        data = made.get(key_of(image))
        name = save_image(folder, "thumbs", key_of(image), data) if data is not None else None
        out.append(Thumb(name, image, entry.get("reason", "")))
    return out


def skipped(folder: Path, output: Path | str, manifest: Manifest) -> tuple[list[Thumb], str | None]:
    """Every image (or box file) the build skipped; thumbnails of the images, read from the
    source; a line when the source cannot be read."""
    if is_url(str(output)):
        images: dict[str, bytes] = {}
        note = "thumbnails of skipped images need a local build" if manifest.skipped else None
    else:
        images, note = skipped_images(Path(output), manifest, thumbnail)
    out = []
    for entry in manifest.skipped:
        where = entry.get("image") or entry.get("file") or "?"
        data = images.get(where)
        name = save_image(folder, "thumbs", key_of(where), data) if data is not None else None
        reason = str(entry.get("reason", ""))
        out.append(Thumb(name, where, reason.removeprefix(f"{where}: ")))  # named already
    return out, note


def contact_sheets(
    folder: Path,
    synsets: Synsets,
    scans: dict[str, SplitScan],
    contact: list[str],
    entries: dict[str, dict[str, Any]],
) -> list[ContactSheet]:
    """A sheet per contact class and split, from the candidates the scan kept."""
    sheets = []
    for wnid in contact:
        label = synsets.index(wnid)
        name = synsets.text(wnid)
        for split, found in scans.items():
            kept = found.contact.get(label, [])
            if not kept:
                continue
            title = f"{wnid} · {name} · {split}"
            sheet = Sheet(title if len(title) < 90 else title[:89] + "…", [t for _, _, t in kept])
            file = save_image(folder, "sheets", f"{wnid}-{split}", contact_sheet(sheet))
            images = entries[split].get("per_class", {}).get(wnid, 0)
            sheets.append(ContactSheet(wnid, name, split, file, len(kept), images))
    return sheets
