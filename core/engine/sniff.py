"""What a file that no allowed decoder accepted looks like, so the refusal can say so ("it looks like a PDF
document") instead of "unknown format"; and which damaged photo format it claims to be."""

from __future__ import annotations

__all__ = ["sniff"]

# Magic numbers of things people upload by mistake, so the message can say what the file looks like.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive or an Office document"),
    (b"8BPS", "a Photoshop document"),
    (b"BM", "a BMP image"),
    (b"\x00\x00\x01\x00", "an icon file"),
    (b"<svg", "an SVG drawing"),
    (b"<?xml", "an XML or SVG file"),
)
_DAMAGED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}


def sniff(data: bytes) -> tuple[str | None, str | None]:
    """Guess ``(description, damaged_format)`` for a file no allowed decoder accepted."""
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _HEIF_BRANDS:
            return "a HEIC photo", "HEIC"
        if brand in (b"avif", b"avis"):
            return "an AVIF image", None
        return "a video", None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return None, "WebP"
    for magic, fmt in _DAMAGED_SIGNATURES:
        if data.startswith(magic):
            return None, fmt
    for magic, description in _SIGNATURES:
        if data.startswith(magic):
            return description, None
    head = data[:2048]
    try:
        text: str | None = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # tolerate a character cut at the 2 KB boundary only
        text = head[: exc.start].decode("utf-8") if exc.start >= len(head) - 3 else None
    if text and text.strip() and all(ch.isprintable() or ch in "\r\n\t\f" for ch in text):
        return "a text file", None
    return None, None
