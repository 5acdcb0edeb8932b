"""Metadata stripping before an attachment is sealed: images by Pillow, PDFs by pypdf.

Owns what is removed from which file type and the one line that tells the author
(docs/spec/85-attachments.md, "On the author's node"). JPEG, PNG and WebP are saved again
from their pixels with the EXIF orientation applied (EXIF with GPS, XMP, comments and text
chunks go; the colour profile stays); a PDF loses its document information and XMP.
Works on bytes in memory, bounded by `limits.MAX_STRIP_BYTES`; other types pass unchanged.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from protocol.errors import CanopyError

IMAGE_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
PDF_TYPE = "application/pdf"
STRIPPED_TYPES = frozenset({*IMAGE_TYPES, PDF_TYPE})
_GPS_IFD = 0x8825
_ORIENTATION = 0x0112


@dataclass(frozen=True, slots=True)
class Stripped:
    data: bytes
    removed: tuple[str, ...]  # what was found and removed, for the author


def strip(data: bytes, media_type: str, name: str) -> Stripped:
    """`data` without its metadata (CanopyError if the file cannot be parsed as its type)."""
    try:
        if media_type in IMAGE_TYPES:
            return _strip_image(data, IMAGE_TYPES[media_type])
        if media_type == PDF_TYPE:
            return _strip_pdf(data)
    except CanopyError:
        raise
    except Exception as exc:  # Pillow and pypdf raise many types on a damaged file
        raise CanopyError(
            f"cannot remove metadata from {name}: it is not a readable {media_type} file"
            f" ({type(exc).__name__}); --keep-metadata attaches it as it is"
        ) from None
    return Stripped(data, ())


def _strip_image(data: bytes, fmt: str) -> Stripped:
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        removed: list[str] = []
        exif = image.getexif()
        if exif:
            gps = _GPS_IFD in exif and bool(exif.get_ifd(_GPS_IFD))
            removed.append("EXIF (with GPS location)" if gps else "EXIF")
        info = image.info
        if "xmp" in info or "XML:com.adobe.xmp" in info:
            removed.append("XMP")
        if info.get("comment"):
            removed.append("comment")
        texts = [k for k in info if k not in _KEPT_INFO and k not in _NAMED_INFO]
        if fmt == "PNG" and texts:
            removed.append("text chunks")
        rotated = exif.get(_ORIENTATION, 1) not in (1, None)
        clean = ImageOps.exif_transpose(image) if rotated else image.copy()
        assert clean is not None
        kept = {k: info[k] for k in _KEPT_INFO if k in info}
        clean.info = dict(kept)
        out = io.BytesIO()
        options: dict[str, object] = {}
        if "icc_profile" in kept:
            options["icc_profile"] = kept["icc_profile"]
        if fmt == "JPEG":
            options["quality"] = 95
        elif fmt == "WEBP":
            options["lossless"] = bool(info.get("lossless"))
            options["quality"] = 95
        clean.save(out, fmt, **options)
    if rotated:
        removed.append("orientation applied")
    return Stripped(out.getvalue(), tuple(removed))


_KEPT_INFO = ("icc_profile", "dpi", "transparency", "gamma")
_NAMED_INFO = (
    "exif",
    "xmp",
    "XML:com.adobe.xmp",
    "comment",
    "jfif",
    "jfif_version",
    "jfif_unit",
    "jfif_density",
    "progressive",
    "progression",
    "adobe",
    "adobe_transform",
    "loop",
    "duration",
    "background",
    "aspect",
    "srgb",
    "chromaticity",
    "lossless",
    "interlace",
)


def _strip_pdf(data: bytes) -> Stripped:
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import NameObject

    reader = PdfReader(io.BytesIO(data))
    removed: list[str] = []
    info = reader.metadata
    if info:
        fields = ", ".join(sorted(k.lstrip("/") for k in info))
        removed.append(f"document information ({fields})")
    writer = PdfWriter(clone_from=reader)
    root = writer._root_object
    if NameObject("/Metadata") in root:
        del root[NameObject("/Metadata")]
        removed.append("XMP")
    writer.metadata = None
    # Objects nothing refers to any more (the old information and XMP) leave the file too.
    try:  # pypdf 6.1 renamed the arguments
        writer.compress_identical_objects(remove_duplicates=False, remove_unreferenced=True)
    except TypeError:
        writer.compress_identical_objects(remove_identicals=False, remove_orphans=True)
    out = io.BytesIO()
    writer.write(out)
    return Stripped(out.getvalue(), tuple(removed))
