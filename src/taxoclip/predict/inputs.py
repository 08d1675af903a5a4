"""What to predict on: files, folders, globs and list files, each image once; and decoding them.

`expand_inputs` turns command-line arguments into an ordered list of `InputItem`s. An argument
that cannot be used (a missing file, a glob that matches nothing, an unreadable list) becomes
an item carrying its error, so that it still appears exactly once in the output. `load_image`
decodes one image the same way everywhere: EXIF orientation applied, any mode turned into
8-bit RGB.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_EXTENSIONS: frozenset[str] = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".dib", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".jp2", ".j2k", ".heic", ".heif", ".avif",
})
"""File name endings collected from folders (explicitly named files are always tried)."""

LIST_EXTENSIONS: frozenset[str] = frozenset({".txt", ".lst", ".csv", ".tsv"})
"""An argument ending like this is a list of images, not an image."""

PATH_COLUMNS: tuple[str, ...] = ("path", "filepath", "file_path", "file", "filename", "file_name", "image")
"""Column names a CSV list may use for its image paths (first match wins, case-insensitive)."""

GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class InputItem:
    """One image to process: `path` is what output rows show; `source` is a path or a PIL image."""

    path: str
    source: Any = None
    error: str | None = None

    @property
    def image_source(self) -> Any:
        return self.path if self.source is None else self.source


def one_line(error: BaseException | str) -> str:
    """An error message on one line (output rows must not contain line breaks)."""
    if isinstance(error, BaseException):
        text = str(error).strip() or type(error).__name__
        if not isinstance(error, OSError | ValueError):
            text = f"{type(error).__name__}: {text}"
    else:
        text = str(error)
    return " ".join(text.split())


def is_image_name(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _folder_images(folder: Path) -> list[str]:
    """Image files under `folder`, recursively (linked folders followed once), hidden entries skipped, sorted."""
    found = []
    visited = {os.path.realpath(folder)}
    for root, dirs, files in os.walk(folder, followlinks=True):
        kept = []
        for name in sorted(dirs):
            real = os.path.realpath(os.path.join(root, name))
            if not name.startswith(".") and real not in visited:
                visited.add(real)
                kept.append(name)
        dirs[:] = kept
        found.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith(".") and is_image_name(f))
    return found


def read_list_file(path: str | os.PathLike) -> list[str]:
    """Image paths listed in a text file (one per line, `#` comments) or a CSV/TSV with a path column.

    Relative paths are taken relative to the list file's folder.
    """
    path = Path(path)
    base = path.parent
    if path.suffix.lower() in (".csv", ".tsv"):
        import csv

        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            header = next(reader, None)
            if header is None:
                return []
            lowered = [h.strip().lower() for h in header]
            column = next((lowered.index(c) for c in PATH_COLUMNS if c in lowered), None)
            if column is None:
                raise ValueError(f"list {path} has no path column (one of {', '.join(PATH_COLUMNS)})")
            entries = [row[column].strip() for row in reader if len(row) > column and row[column].strip()]
    else:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
        entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [entry if os.path.isabs(os.path.expanduser(entry)) else str(base / entry) for entry in
            (os.path.expanduser(e) for e in entries)]


def _expand_one(argument: str, depth: int = 0) -> list[InputItem]:
    text = os.path.expanduser(str(argument))
    path = Path(text)
    if path.is_dir():
        found = _folder_images(path)
        return [InputItem(p) for p in found] if found else [InputItem(text, error="no images in this folder")]
    if path.is_file():
        if path.suffix.lower() in LIST_EXTENSIONS and depth == 0:
            try:
                listed = read_list_file(path)
            except (OSError, ValueError, UnicodeDecodeError) as err:
                return [InputItem(text, error=f"cannot read list file: {one_line(err)}")]
            return [item for entry in listed for item in _expand_one(entry, depth + 1)]
        return [InputItem(text)]
    if GLOB_CHARACTERS & set(text):
        matches = sorted(glob.glob(text, recursive=True))
        if not matches:
            return [InputItem(text, error="no files match this pattern")]
        items = []
        for match in matches:
            if os.path.isdir(match):
                items.extend(InputItem(p) for p in _folder_images(Path(match)))
            elif is_image_name(match):
                items.append(InputItem(match))
        return items
    return [InputItem(text, error="no such file or directory")]


def expand_inputs(arguments: Iterable[Any]) -> list[InputItem]:
    """Every image named by `arguments`, in order, each once (the first mention wins).

    Arguments may be image files, folders (searched recursively for image files), glob
    patterns (`**` allowed), list files (`.txt`/`.lst`: one path per line; `.csv`/`.tsv`: a
    `path`/`filepath` column), or PIL images (named `<image N>`).
    """
    items: list[InputItem] = []
    seen: set[str] = set()
    for position, argument in enumerate(arguments):
        if hasattr(argument, "convert") and hasattr(argument, "size"):  # a PIL image
            items.append(InputItem(f"<image {position}>", source=argument))
            continue
        for item in _expand_one(os.fspath(argument)):
            key = os.path.normpath(os.path.abspath(item.path))
            if key in seen:
                continue
            seen.add(key)
            items.append(item)
    return items


def _to_8bit(image: Any) -> Any:
    """16-bit and 32-bit greyscale (`I;16*`, `I`, `F`) scaled to 8 bits, not clipped."""
    import numpy as np
    from PIL import Image

    array = np.asarray(image)
    if image.mode.startswith("I;16"):
        scaled = array.astype(np.float32) / 257.0
    elif image.mode == "I":
        peak = float(array.max()) if array.size else 0.0
        scaled = array.astype(np.float32) / (257.0 if peak > 255 else 1.0)
    else:  # "F"
        finite = array[np.isfinite(array)]
        peak = float(finite.max()) if finite.size else 0.0
        scaled = np.nan_to_num(array.astype(np.float32)) * (255.0 if peak <= 1.0 else 1.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Any) -> Any:
    """Any PIL image as 8-bit RGB: transparency composited on white, palettes expanded, CMYK converted."""
    from PIL import Image

    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode in ("RGB", "L") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image if image.mode == "RGB" else image.convert("RGB")


def load_image(source: Any) -> Any:
    """Decode an image file (or take a PIL image) as RGB with its EXIF orientation applied."""
    from PIL import Image, ImageOps

    if isinstance(source, Image.Image):
        return to_rgb(ImageOps.exif_transpose(source))
    with Image.open(source) as opened:
        return to_rgb(ImageOps.exif_transpose(opened))
