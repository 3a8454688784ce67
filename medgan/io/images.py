"""Ordinary image files (PNG, JPEG, TIFF, BMP) listed in a labels CSV.

:func:`read_image` returns a file's raw values as (C, H, W) with C = 1 or 3 in the file's own
dtype (16-bit PNG stays uint16); :func:`read_labels_csv` checks a ``path,label[,patient_id][,split][,mask]``
CSV; :func:`read_image_folder` returns both as the 2-D reader contract
(:class:`~medgan.io.contract.Images2D`), reading one file at a time.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
import struct
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError

from medgan.errors import InputError
from medgan.io.atomic import atomic_write_bytes
from medgan.io.contract import ImageBatch, Images2D, as_chw
from medgan.io.limits import MAX_VOXELS_ENV, check_claim, max_voxels
from medgan.paths import inside, require_regular_file
from medgan.progress import progress

#: Columns a labels CSV may have; ``path`` and ``label`` are required.
CSV_COLUMNS: tuple[str, ...] = ("path", "label", "patient_id", "split", "mask")
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")

#: The image formats medgan reads (a multi-page TIFF: its first page, as documented).
READ_FORMATS = ("png", "jpeg", "tiff", "bmp")
#: File suffixes of the formats read (for folders listed without a CSV, e.g. a folder of masks).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_FORMAT_NAMES = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "TIFF": "tiff", "BMP": "bmp", "DIB": "bmp"}
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),
    (b"MM\x00+", "tiff"),
    (b"BM", "bmp"),
    (b"GIF8", "gif"),
)


# --------------------------------------------------------------------------- reading one image


def _sniff(path: Path) -> str | None:
    """The image format the first bytes of ``path`` announce, or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    return None


def _bits(im: Image.Image, fmt: str, path: Path) -> int:
    """Bits per sample the file declares (TIFF tag or PNG header), 8 when unknown."""
    try:
        if fmt == "tiff":
            bits = im.tag_v2.get(258, 8)  # type: ignore[attr-defined]
            return int(max(bits)) if isinstance(bits, tuple) else int(bits)
        if fmt == "png":
            with open(path, "rb") as fh:
                return int(fh.read(25)[24])  # IHDR bit depth
    except (AttributeError, OSError, ValueError, TypeError, IndexError):
        pass
    return 8


def _one_line(text: str, limit: int = 200) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def _pillow_guard(notes: list[str] | None) -> Iterator[None]:
    """Pillow's own pixel limit set to :func:`~medgan.io.limits.max_voxels` for one read, and
    Pillow's warnings recorded in ``notes`` (one line each) instead of printed on stderr.

    Our header check (:func:`~medgan.io.limits.check_claim`) decides what is too large, so
    raising ``$MEDGAN_MAX_VOXELS`` lets a genuine large image load; Pillow's check (which refuses
    at twice its limit, before ours runs) can then only refuse what ours refuses too.
    """
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_voxels()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    if notes is not None:
        for w in caught:
            text = _one_line(str(w.message))
            if text and text not in notes:
                notes.append(text)


def _too_many_pixels(path: Path, exc: Exception) -> InputError:
    """Our one-line refusal for Pillow's DecompressionBombError (raised at twice our limit)."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    claim = f"claims {int(found.group(1)):,} pixels, more" if found else "claims more pixels"
    return InputError(
        path,
        f"the image header {claim} than the limit of {max_voxels():,} values "
        f"(raise {MAX_VOXELS_ENV} if the file is genuine)",
    )


def _composite(rgb: np.ndarray, alpha: np.ndarray, full: float) -> np.ndarray:
    """RGB (H, W, 3) composited onto black with ``alpha`` (H, W) where ``full`` is opaque; dtype kept."""
    out = rgb.astype(np.float64) * (alpha.astype(np.float64) / full)[..., None]
    if np.issubdtype(rgb.dtype, np.integer):
        return np.rint(out).astype(rgb.dtype)
    return out.astype(rgb.dtype)


def _grey_palette(im: Image.Image) -> bool:
    """True when every palette entry the image uses is grey (R == G == B)."""
    pal = im.getpalette("RGB")
    if not pal:
        return False
    pal_arr = np.asarray(pal, dtype=np.int32).reshape(-1, 3)
    used = np.unique(np.asarray(im))
    used = used[used < len(pal_arr)]
    sub = pal_arr[used]
    return bool(np.all(sub[:, 0] == sub[:, 1]) and np.all(sub[:, 1] == sub[:, 2]))


def _pillow_to_array(im: Image.Image, fmt: str) -> np.ndarray:
    """Pixel values of an opened, loaded Pillow image as (H, W) or (H, W, 3)."""
    mode = im.mode
    if mode == "1":
        return np.asarray(im.convert("L"), dtype=np.uint8)
    if mode == "L":
        return np.asarray(im, dtype=np.uint8)
    if mode in ("LA", "La"):
        return np.asarray(im.getchannel("L"), dtype=np.uint8)
    if mode.startswith("I;16"):
        signed = mode.startswith("I;16S")
        return np.asarray(im).astype(np.int16 if signed else np.uint16)
    if mode == "I":
        arr = np.asarray(im).astype(np.int32)
        if fmt == "png" and (not arr.size or (arr.min() >= 0 and arr.max() <= 65535)):
            return arr.astype(np.uint16)  # 16-bit PNG opened as "I" by some Pillow versions
        return arr
    if mode == "F":
        return np.asarray(im, dtype=np.float32)
    if mode in ("P", "PA"):
        transparent = mode == "PA" or "transparency" in im.info
        if not transparent and _grey_palette(im):
            return np.asarray(im.convert("L"), dtype=np.uint8)
        im = im.convert("RGBA" if transparent else "RGB")
        mode = im.mode
    if mode == "RGBA":
        arr = np.asarray(im, dtype=np.uint8)
        return _composite(arr[..., :3], arr[..., 3], 255.0)
    if mode in ("RGB", "RGBX", "RGBa"):
        return np.asarray(im, dtype=np.uint8)[..., :3]
    return np.asarray(im.convert("RGB"), dtype=np.uint8)  # CMYK, YCbCr, LAB, HSV, ...


def _fix_dtype(arr: np.ndarray) -> np.ndarray:
    """Map any dtype onto uint8, uint16, int32 or float32."""
    dt = arr.dtype
    if dt == np.bool_:
        return arr.astype(np.uint8) * np.uint8(255)
    if dt in (np.uint8, np.uint16, np.int32, np.float32):
        return arr
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        if info.min >= np.iinfo(np.int32).min and info.max <= np.iinfo(np.int32).max:
            return arr.astype(np.int32)
        if arr.size and arr.min() >= np.iinfo(np.int32).min and arr.max() <= np.iinfo(np.int32).max:
            return arr.astype(np.int32)
        return arr.astype(np.float32)
    if np.issubdtype(dt, np.floating):
        return arr.astype(np.float32)
    raise ValueError(f"unsupported pixel type {dt}")


def _tifffile_to_array(path: Path) -> np.ndarray:
    """First page of a TIFF that Pillow cannot decode, as (H, W) or (H, W, 3)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.pages:
                raise InputError(path, "TIFF file has no pages")
            page = tif.pages[0]
            check_claim(path, page.shape, what="the TIFF header")
            if page.compression == 1 and page.databytecounts:  # uncompressed: the data must be in the file
                check_claim(
                    path,
                    page.shape,
                    what="the TIFF header",
                    itemsize=page.dtype.itemsize if page.dtype is not None else 1,
                    available=min(int(sum(page.databytecounts)), path.stat().st_size),
                )
            arr = page.asarray()
            axes = getattr(page, "axes", "")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"image file is truncated or corrupt ({exc.__class__.__name__})") from None
    if len(axes) != arr.ndim:
        axes = "YX" if arr.ndim == 2 else "YXS"
    while arr.ndim > 2 and arr.shape[0] == 1 and axes[0] not in "YXS":
        arr, axes = arr[0], axes[1:]  # e.g. a depth axis of length 1
    if arr.ndim == 3 and axes.startswith("S") and arr.shape[0] <= 4:
        arr = np.moveaxis(arr, 0, -1)  # planar (S, Y, X) -> (Y, X, S)
    if arr.ndim == 2:
        return arr
    if arr.ndim != 3 or arr.shape[-1] not in (2, 3, 4):
        raise InputError(path, f"unsupported TIFF page shape {tuple(arr.shape)}; expected grey or RGB(A)")
    c = arr.shape[-1]
    if c == 2:
        return arr[..., 0]
    if c == 4:
        full = float(np.iinfo(arr.dtype).max) if np.issubdtype(arr.dtype, np.integer) else 1.0
        return _composite(arr[..., :3], arr[..., 3], full)
    return arr


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _check_png(path: Path) -> None:
    """Walk the chunks of a PNG before Pillow reads it: every chunk must lie inside the file (Pillow
    allocates a chunk's stated length), and width x height must fit the voxel limit and what the
    compressed image data (IDAT) can inflate to."""
    size = path.stat().st_size
    ihdr: tuple[int, ...] | None = None
    idat = 0
    with open(path, "rb") as fh:
        pos = 8
        while pos + 8 <= size:
            fh.seek(pos)
            length, ctype = struct.unpack(">I4s", fh.read(8))
            if pos + 12 + length > size:
                name = ctype.decode("ascii") if ctype.isalpha() else f"0x{ctype.hex()}"
                raise InputError(
                    path,
                    f"image file is truncated or corrupt (PNG chunk {name} of {length:,} bytes runs past its end)",
                )
            if ctype == b"IHDR" and length == 13 and ihdr is None:
                ihdr = struct.unpack(">IIBB", fh.read(10))
            elif ctype == b"IDAT":
                idat += length
            elif ctype == b"IEND":
                break
            pos += 12 + length
    if ihdr is None:
        return  # Pillow reports a PNG without a header
    width, height, depth, colour = ihdr
    samples = _PNG_CHANNELS.get(colour, 4)
    check_claim(path, (height, width, samples), what="the PNG header")
    row_bytes = 1 + math.ceil(width * samples * max(depth, 1) / 8)  # a filter byte starts each row
    check_claim(path, (height, row_bytes), what="the PNG header", itemsize=1, compressed=idat)


def _open_image(path: Path, sniffed: str | None) -> tuple[np.ndarray, str, bool]:
    """Decode ``path`` with Pillow (``tifffile`` for TIFFs Pillow cannot read): (array, format, deep colour).

    The array is Pillow's layout, (H, W) or (H, W, C), EXIF orientation applied; deep colour is
    True for a colour / alpha file declaring more than 8 bits that Pillow decoded at 8 bits.
    """
    deep_colour = False
    try:
        with Image.open(path) as im:
            fmt = _FORMAT_NAMES.get(im.format or "", (im.format or sniffed or "image").lower())
            if (
                fmt not in READ_FORMATS
            ):  # Pillow opens more (GIF, WebP, ...): an animation would pass as one frame
                frames = int(getattr(im, "n_frames", 1) or 1)
                what = (
                    f"an animated {fmt.upper()} ({frames} frames)" if frames > 1 else f"a {fmt.upper()} image"
                )
                raise InputError(
                    path, f"{what}; medgan reads PNG, JPEG, TIFF or BMP images (convert it to PNG)"
                )
            bits = _bits(im, fmt, path)
            check_claim(path, (im.size[1], im.size[0], len(im.getbands())), what="the image header")
            im.load()
            orientation = im.getexif().get(0x0112, 1)
            if orientation not in (None, 1):
                im = ImageOps.exif_transpose(im)
            arr = _pillow_to_array(im, fmt)
            deep_colour = bits > 8 and im.mode not in ("I", "F") and not im.mode.startswith("I;16")
    except UnidentifiedImageError:
        if sniffed == "tiff":
            arr, fmt = _tifffile_to_array(path), "tiff"
        elif sniffed is not None:
            raise InputError(path, "image file is truncated or corrupt") from None
        else:
            raise InputError(path, "not an image file (expected PNG, JPEG, TIFF or BMP)") from None
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(path, exc) from None
    except PermissionError:
        raise InputError(path, "permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if sniffed == "tiff" and "truncated" not in str(exc):
            arr, fmt = _tifffile_to_array(path), "tiff"
        else:
            raise InputError(path, "image file is truncated or corrupt") from None
    return arr, fmt, deep_colour


def _read(path: Path, notes: list[str] | None = None) -> tuple[np.ndarray, str]:
    """Read one image: ((C, H, W) array, format name such as ``png``); tolerated problems go to ``notes``."""
    path = Path(path)
    require_regular_file(path, expected="an image file")  # missing, a folder, a device, FIFO or socket
    sniffed = _sniff(path)
    if sniffed == "png":
        _check_png(path)
    with _pillow_guard(notes):
        arr, fmt, deep_colour = _open_image(path, sniffed)
        if deep_colour and fmt == "tiff":
            with contextlib.suppress(InputError):  # keep Pillow's 8-bit values if tifffile cannot decode it
                arr = _tifffile_to_array(path)
    if deep_colour and fmt != "tiff" and notes is not None:
        notes.append("16-bit colour or alpha image read as 8-bit (a Pillow limit)")
    try:
        arr = _fix_dtype(arr)
    except ValueError as exc:
        raise InputError(path, str(exc)) from None
    arr = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    return np.ascontiguousarray(arr), fmt


def read_image(path: Path, notes: list[str] | None = None) -> np.ndarray:
    """Read a PNG / JPEG / TIFF / BMP file as raw values, shape (C, H, W) with C = 1 or 3.

    The dtype is the file's: uint8, uint16 (16-bit PNG / TIFF), int32 or float32. Alpha is
    dropped from grey images and composited onto black for colour ones; palettes become grey
    or RGB; bilevel images become 0/255. TIFFs Pillow cannot decode (float64, multi-sample
    float, ...) are read with ``tifffile`` (first page). Problems raise :class:`InputError`;
    only a regular file is opened, and ``$MEDGAN_MAX_VOXELS`` (not Pillow's own limit) decides
    what is too large. Problems tolerated (Pillow's warnings, 16-bit colour read as 8-bit) are
    never printed: they are appended to ``notes`` when given, one line each.
    """
    return _read(Path(path), notes)[0]


# --------------------------------------------------------------------------- the labels CSV


def _natural_key(s: str) -> tuple:
    parts = re.split(r"(\d+)", s)
    return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)), s


def sort_labels(labels: Iterable[str]) -> list[str]:
    """Unique labels in a numeric-aware order: by value when all are numbers, else natural order."""
    uniq = set(labels)
    try:
        values = {u: float(u) for u in uniq}
    except ValueError:
        return sorted(uniq, key=_natural_key)
    if all(math.isfinite(v) for v in values.values()):
        return sorted(uniq, key=lambda u: (values[u], u))
    return sorted(uniq, key=_natural_key)


def _csv_rows(csv_path: Path) -> tuple[list[str], list[list[str]]]:
    """Header (stripped, lower-case) and data rows (stripped cells), skipping blank lines."""
    require_regular_file(csv_path, expected="a labels CSV file")
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(csv_path, "not a UTF-8 text CSV file") from None
    except OSError as exc:
        raise InputError(csv_path, f"cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    try:
        rows = [[c.strip() for c in r] for r in csv.reader(text.splitlines())]
    except csv.Error as exc:
        raise InputError(csv_path, f"not a readable CSV file ({exc})") from None
    rows = [r for r in rows if any(r)]
    if not rows:
        raise InputError(
            csv_path, "empty file; expected a header line 'path,label[,patient_id][,split][,mask]'"
        )
    return [c.lower() for c in rows[0]], rows[1:]


def _clip(value: object, limit: int = 100, quote: bool = True) -> str:
    """``repr(value)`` (or ``str`` without ``quote``) cut to ``limit`` characters, for error messages."""
    text = repr(value) if quote else str(value)
    text = text if quote else text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_header(csv_path: Path, header: list[str], rows: list[list[str]]) -> None:
    """The header names only known columns, has ``path`` and ``label``, repeats none; data rows follow."""
    extra = [c for c in header if c not in CSV_COLUMNS]
    if extra:
        raise InputError(
            csv_path, f"unknown column(s) {_clip(extra)}; allowed columns are {list(CSV_COLUMNS)}"
        )
    missing_cols = [c for c in ("path", "label") if c not in header]
    if missing_cols:
        raise InputError(
            csv_path,
            f"missing column(s) {missing_cols}; the first line must be the header "
            "'path,label[,patient_id][,split][,mask]'",
        )
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise InputError(csv_path, f"column(s) {dup} appear more than once in the header")
    if not rows:
        raise InputError(csv_path, "no rows: the CSV has a header but lists no images")


def _row_cells(csv_path: Path, n: int, cells: list[str], header: list[str]) -> dict[str, str]:
    """Data row ``n`` as ``{column: cell}`` (a short row padded with ""); path and label must not be empty."""
    if len(cells) > len(header):
        problem = f"row {n}: {len(cells)} cells but the header has {len(header)} columns"
        raise InputError(csv_path, problem)
    cells = cells + [""] * (len(header) - len(cells))
    rec = {name: cells[i] for i, name in enumerate(header)}
    rel = rec["path"]
    if not rel:
        raise InputError(csv_path, f"row {n}: empty path")
    if not rec["label"]:
        raise InputError(csv_path, f"row {n}: empty label for {_clip(rel, quote=False)}")
    return rec


def _exists(csv_path: Path, n: int, rel: str, full: Path) -> bool:
    """Whether row ``n``'s path exists; a path the file system cannot even look up raises InputError."""
    try:
        return full.exists()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise InputError(csv_path, f"row {n}: unusable path {_clip(rel)} ({exc.strerror or exc})") from None


def _check_splits(csv_path: Path, records: list[dict]) -> None:
    """Drop an entirely empty ``split`` column from ``records``; otherwise every row needs train/val/test."""
    if not any(r["split"] for r in records):
        for r in records:
            del r["split"]
        return
    for r in records:
        if not r["split"]:
            raise InputError(
                csv_path, f"row {r['row']}: empty split; give train/val/test on every row or on none"
            )
        if r["split"] not in SPLIT_NAMES:
            n, allowed = r["row"], ", ".join(SPLIT_NAMES)
            raise InputError(csv_path, f"row {n}: split {_clip(r['split'])} is not one of {allowed}")


def _assign_labels(csv_path: Path, records: list[dict], classes: list[str] | None) -> list[str]:
    """Set each record's ``label`` to its class index; the class list is ``classes`` or the sorted labels."""
    if classes is not None:
        class_list = [str(c) for c in classes]
        for r in records:
            if r["label_name"] not in class_list:
                n, label = r["row"], r["label_name"]
                raise InputError(
                    csv_path,
                    f"row {n}: label {_clip(label)} is not one of the configured classes {_clip(class_list)}",
                )
    else:
        class_list = sort_labels(r["label_name"] for r in records)
    index = {c: i for i, c in enumerate(class_list)}
    for r in records:
        r["label"] = index[r["label_name"]]
    return class_list


def read_labels_csv(csv: Path, root: Path, classes: list[str] | None) -> tuple[pd.DataFrame, list[str]]:
    """Read and check a labels CSV with columns ``path,label[,patient_id][,split][,mask]``.

    Paths are relative to ``root`` and must name regular files inside it (the rule of
    :func:`medgan.paths.inside`): neither ``..``, an absolute path nor a symbolic link may lead
    outside ``root`` (set ``root`` higher up to reach files elsewhere), and a device, FIFO or
    socket is refused before it is opened. Labels are class names as written; with ``classes``
    given they must be among them, otherwise the classes are the sorted unique labels. A
    ``split`` column (train / val / test) that is entirely empty counts as absent.

    Returns ``(frame, classes)``: the frame has ``row`` (1-based data row), ``path`` (absolute),
    ``label`` (index into ``classes``), ``label_name`` and, when present, ``patient_id``, ``split``
    and ``mask`` (the mask image's absolute path, under the same rules as ``path``).
    """
    csv_path = Path(csv)
    header, rows = _csv_rows(csv_path)
    _check_header(csv_path, header, rows)
    root_abs = Path(os.path.normpath(Path(root).absolute()))

    records: list[dict] = []
    missing: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for n, cells in enumerate(rows, start=1):
        rec = _row_cells(csv_path, n, cells, header)
        rel = rec["path"]
        full = inside(root_abs, rel, csv_path, f"row {n}: path")
        key = str(full)
        if key in seen:
            raise InputError(
                csv_path, f"row {n}: {_clip(rel, quote=False)} is listed again (first on row {seen[key]})"
            )
        seen[key] = n
        if not _exists(csv_path, n, rel, full):
            missing.append((n, rel))
        else:
            require_regular_file(full, csv_path, f"row {n}: {_clip(rel, quote=False)}", "an image file")
        out = {"row": n, "path": key, "label_name": rec["label"]}
        if "mask" in rec:
            out["mask"] = _mask_path(csv_path, n, rec["mask"], root_abs)
        if "patient_id" in rec:
            out["patient_id"] = rec["patient_id"]
        if "split" in rec:
            out["split"] = rec["split"].lower()
        records.append(out)

    if missing:
        n, rel = missing[0]
        more = f" ({len(missing)} of {len(records)} listed files are missing)" if len(missing) > 1 else ""
        raise InputError(csv_path, f"row {n}: file not found: {_clip(rel, quote=False)}{more}")
    if "split" in header:
        _check_splits(csv_path, records)
    class_list = _assign_labels(csv_path, records, classes)

    extra = [c for c in ("patient_id", "split", "mask") if c in records[0]]
    columns = ["row", "path", "label", "label_name", *extra]
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame["row"] = frame["row"].astype("int64")
    frame["label"] = frame["label"].astype("int64")
    return frame, class_list


def _mask_path(csv_path: Path, n: int, rel: str, root: Path) -> str:
    """Row ``n``'s mask file (absolute, inside ``root``, a regular file); every row names one."""
    if not rel:
        raise InputError(
            csv_path,
            f"row {n}: the mask column is empty; give every image its mask (an all-0 image for none)",
        )
    full = inside(root, rel, csv_path, f"row {n}: mask")
    if not _exists(csv_path, n, rel, full):
        raise InputError(csv_path, f"row {n}: mask file not found: {_clip(rel, quote=False)}")
    require_regular_file(full, csv_path, f"row {n}: {_clip(rel, quote=False)}", "a mask image")
    return str(full)


def read_mask(path: Path, shape: tuple[int, int] | None, image: Path | str | None = None) -> np.ndarray:
    """A lesion mask image as (H, W) uint8, 1 where any channel is nonzero, else 0; with ``shape``
    it must have its image's shape (a mask of another size would label the wrong pixels)."""
    raw, _ = _read(Path(path))
    if np.issubdtype(raw.dtype, np.floating) and not np.isfinite(raw).all():
        raise InputError(path, "mask has NaN or infinite values")
    if shape is not None and tuple(raw.shape[1:]) != tuple(shape):
        raise InputError(
            path,
            f"mask is {raw.shape[1]}x{raw.shape[2]}, its image {Path(image or path).name} is {shape[0]}x{shape[1]}",
        )
    return (raw != 0).any(axis=0).astype(np.uint8)


# --------------------------------------------------------------------------- the whole folder


def read_image_folder(
    labels_csv: str | Path, root: str | Path | None = None, classes: list[str] | None = None
) -> Images2D:
    """Every image a labels CSV lists, as the 2-D reader contract (checked CSV first, files lazily).

    ``root`` (default: the CSV's folder) and ``classes`` are as in :func:`read_labels_csv`. The
    batches read one file each, in CSV order, with a progress bar: raw (1, C, H, W) pixels in
    the file's dtype and one row (``split`` / ``patient_id`` when the CSV gives them). ``info``
    has ``n_files``. Problems Pillow tolerated are never printed: once every batch is read,
    ``warnings`` holds one line per kind of problem, with how many files had it and the first.
    """
    csv_path = Path(labels_csv)
    frame, class_list = read_labels_csv(
        csv_path, Path(root) if root is not None else csv_path.parent, classes
    )
    notes: list[str] = []
    return Images2D(
        class_list,
        _image_batches(frame, csv_path, notes),
        "images",
        where=str(csv_path),
        info={"n_files": len(frame)},
        warnings=notes,
    )


def _summarise_notes(per_note: dict[str, list[str]]) -> list[str]:
    """One line per tolerated problem: ``a.png: <problem>`` or ``<problem> (N files, first a.png)``."""
    out = []
    for note, files in per_note.items():
        out.append(
            f"{files[0]}: {note}" if len(files) == 1 else f"{note} ({len(files)} files, first {files[0]})"
        )
    return out


def _image_batches(frame: pd.DataFrame, csv_path: Path, warnings_out: list[str]) -> Iterator[ImageBatch]:
    """One :class:`ImageBatch` per listed file, read when the batch is asked for; the problems
    tolerated on the way are summarised into ``warnings_out`` after the last one."""
    per_note: dict[str, list[str]] = {}
    for rec in progress(frame.to_dict("records"), f"reading {csv_path.name}"):
        file = Path(rec["path"])
        notes: list[str] = []
        raw, fmt = _read(file, notes)
        for note in notes:
            per_note.setdefault(note, []).append(file.name)
        row = {
            "label": int(rec["label"]),
            "label_name": rec["label_name"],
            "source": str(file),
            "source_format": fmt,
            "rows": int(raw.shape[1]),
            "cols": int(raw.shape[2]),
        }
        if rec.get("split"):
            row["split"] = rec["split"]
        if rec.get("patient_id"):
            row["patient_id"] = rec["patient_id"]
        masks = None
        if "mask" in rec:
            m = read_mask(Path(rec["mask"]), (int(raw.shape[1]), int(raw.shape[2])), file)
            masks = m[None]
            row.update(mask_source=str(rec["mask"]), mask_px=int(np.count_nonzero(m)))
        yield ImageBatch(raw[None], [row], str(file), masks)
    warnings_out.extend(_summarise_notes(per_note))


# --------------------------------------------------------------------------- writing PNG


def write_mask_png(path: Path, mask: np.ndarray) -> Path:
    """Write a lesion mask (1, H, W) or (H, W) as an 8-bit grey PNG: 255 = lesion, 0 = not (the
    convention of BUSI and most 2-D segmentation sets; :func:`read_mask` reads any nonzero as lesion)."""
    m = np.asarray(mask)
    m = m[None] if m.ndim == 2 else m
    if m.ndim != 3 or m.shape[0] != 1:
        raise ValueError(f"a mask is (1, H, W) or (H, W); got {np.asarray(mask).shape}")
    return write_png(path, np.where(m > 0, 1.0, -1.0).astype(np.float32), bits=8)


def write_png(path: Path, image: np.ndarray, bits: int = 8) -> Path:
    """Write a generated slice (C, H, W) in [-1, 1] as an 8- or 16-bit PNG; returns ``path``.

    Values map to ``rint((x + 1) / 2 * (2**bits - 1))`` (clipped). Grey becomes mode ``L``
    (8-bit) or ``I;16`` (16-bit), RGB becomes 8-bit ``RGB``; 16-bit RGB raises ValueError
    (Pillow cannot write it). The file carries no text chunks or other metadata, is written
    atomically, and the same array always gives the same bytes.
    """
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    arr = as_chw(image)
    if bits == 16 and arr.shape[0] == 3:
        raise ValueError("16-bit RGB PNG is not supported (Pillow limit); use bits=8 or a grey image")
    maxval = float(2**bits - 1)
    q = np.clip(np.rint((arr + 1.0) / 2.0 * maxval), 0.0, maxval)
    if arr.shape[0] == 1:
        if bits == 8:
            im = Image.fromarray(np.ascontiguousarray(q[0].astype(np.uint8)))
        else:
            im = Image.frombytes("I;16", (q.shape[2], q.shape[1]), q[0].astype("<u2").tobytes())
    else:
        im = Image.fromarray(np.ascontiguousarray(np.moveaxis(q, 0, -1).astype(np.uint8)))
    im.info.clear()
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False, compress_level=6)
    return atomic_write_bytes(path, buf.getvalue())
