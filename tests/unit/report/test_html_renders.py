"""The report's HTML page as a browser draws it: Debian's `chromium`, headless, takes a screenshot
(which must not be blank, and must show the charts' colours) and prints the page to PDF (A4
landscape, more than one page). Skipped, with the reason, where chromium is not installed.

The PNG is read with the standard library (zlib and the PNG format's five row filters): no
imaging package for one test.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.report.html import render_html
from tests.unit.report.test_html import empty_report, hostile_report, realistic_report

# A cold start on a busy two-core machine takes seconds; a minute means it hung.
CHROMIUM_TIMEOUT_S = 90
WIDTH, HEIGHT = 1200, 2000
WHITE = b"\xff\xff\xff"
P50_BLUE = bytes.fromhex("1f4e9a")  # consumer/report/svg.py: the p50 markers' fill
BAR_BLUE = bytes.fromhex("4a6f9c")  # consumer/report/svg.py: the age bars' fill
MEDIA_BOX = re.compile(rb"/MediaBox \[([^\]]*)\]")
PAGE_COUNT = re.compile(rb"/Type /Pages\s*/Count (\d+)")


def _chromium() -> str:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip(
        "chromium not installed: neither /usr/bin/chromium nor `chromium` on PATH "
        "(Debian: apt-get install chromium); the page is still checked by test_html.py"
    )


@pytest.fixture(scope="module")
def chromium() -> str:
    return _chromium()


def _run(chromium: str, tmp_path: Path, page: Path, *output: str) -> None:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *output,
        page.as_uri(),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"


def _write(tmp_path: Path, document: str, name: str = "report.html") -> Path:
    page = tmp_path / name
    page.write_text(document, encoding="utf-8")
    return page


def _screenshot(chromium: str, tmp_path: Path, document: str, height: int = HEIGHT) -> Image:
    png = tmp_path / "shot.png"
    png.unlink(missing_ok=True)
    page = _write(tmp_path, document)
    _run(chromium, tmp_path, page, f"--screenshot={png}", f"--window-size={WIDTH},{height}")
    return decode_png(png.read_bytes())


# --- a PNG reader, enough for a browser's screenshot ----------------------------------------


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    channels: int  # 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA
    rows: list[bytes]  # unfiltered scanlines

    def pixels(self, y: int) -> list[tuple[int, ...]]:
        row, step = self.rows[y], self.channels
        return [tuple(row[x : x + step]) for x in range(0, len(row), step)]

    def colours(self) -> Counter[bytes]:
        """How many pixels have each colour (the colour channels' bytes, alpha left out)."""
        step, keep = self.channels, min(self.channels, 3)
        return Counter(row[x : x + keep] for row in self.rows for x in range(0, len(row), step))

    def inked_rows(self) -> list[int]:
        """The rows that hold anything but the white background."""
        step = self.channels
        return [
            y
            for y, row in enumerate(self.rows)
            if any(row[x : x + 3] != WHITE for x in range(0, len(row), step))
        ]


def _paeth(left: int, up: int, up_left: int) -> int:
    estimate = left + up - up_left
    to_left, to_up, to_up_left = abs(estimate - left), abs(estimate - up), abs(estimate - up_left)
    if to_left <= to_up and to_left <= to_up_left:
        return left
    return up if to_up <= to_up_left else up_left


def _add_bytes(a: bytes, b: bytes) -> bytes:
    """Bytewise (a + b) mod 256 of two equal-length strings, all at once: the high bit of each
    byte is added apart so that no carry crosses into the next byte (SWAR)."""
    size = len(a)
    low = int.from_bytes(b"\x7f" * size, "little")
    high = int.from_bytes(b"\x80" * size, "little")
    x, y = int.from_bytes(a, "little"), int.from_bytes(b, "little")
    return (((x & low) + (y & low)) ^ ((x ^ y) & high)).to_bytes(size, "little")


def _unfilter(kind: int, line: bytes, previous: bytes, bpp: int) -> bytes:
    """One scanline with its filter undone (PNG spec, section 9)."""
    if kind == 0:
        return line
    if kind == 2:  # Up: most of a screenshot's rows, done in one step
        return _add_bytes(line, previous)
    out = bytearray(line)
    if kind == 1:  # Sub
        for i in range(bpp, len(out)):
            out[i] = (out[i] + out[i - bpp]) & 0xFF
    elif kind == 3:  # Average
        for i in range(len(out)):
            left = out[i - bpp] if i >= bpp else 0
            out[i] = (out[i] + (left + previous[i]) // 2) & 0xFF
    elif kind == 4:  # Paeth
        for i in range(bpp):
            out[i] = (out[i] + previous[i]) & 0xFF
        for i in range(bpp, len(out)):
            out[i] = (out[i] + _paeth(out[i - bpp], previous[i], previous[i - bpp])) & 0xFF
    else:
        raise AssertionError(f"unknown PNG filter {kind}")
    return bytes(out)


def decode_png(data: bytes) -> Image:
    """An 8-bit, non-interlaced PNG's pixels (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, chunks, header = 8, [], b""
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8, f"bit depth {depth}"
    assert interlace == 0, "interlaced"
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    stride = width * channels
    raw = zlib.decompress(b"".join(chunks))
    assert len(raw) == height * (stride + 1), "truncated image data"
    rows: list[bytes] = []
    previous = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        previous = _unfilter(raw[start], raw[start + 1 : start + 1 + stride], previous, channels)
        rows.append(previous)
    return Image(width, height, channels, rows)


def _filtered(kind: int, line: bytes, previous: bytes, bpp: int) -> bytes:
    """The PNG encoder's side of a filter, byte by byte as the spec writes it."""
    out = bytearray()
    for i, value in enumerate(line):
        left = line[i - bpp] if i >= bpp else 0
        up, up_left = previous[i], previous[i - bpp] if i >= bpp else 0
        guess = [0, left, up, (left + up) // 2, _paeth(left, up, up_left)][kind]
        out.append((value - guess) & 0xFF)
    return bytes(out)


def _png(width: int, channels: int, rows: list[bytes], filters: list[int]) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw, previous = b"", bytes(width * channels)
    for row, kind in zip(rows, filters, strict=True):
        raw += bytes([kind]) + _filtered(kind, row, previous, channels)
        previous = row
    header = struct.pack(">IIBBBBB", width, len(rows), 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@st.composite
def _images(draw: st.DrawFn) -> tuple[int, int, list[bytes], list[int]]:
    width = draw(st.integers(1, 9))
    channels = draw(st.sampled_from([1, 2, 3, 4]))
    height = draw(st.integers(1, 6))
    rows = [
        draw(st.binary(min_size=width * channels, max_size=width * channels)) for _ in range(height)
    ]
    filters = draw(st.lists(st.integers(0, 4), min_size=height, max_size=height))
    return width, channels, rows, filters


@settings(max_examples=200, deadline=None)
@given(_images())
def test_the_png_reader_undoes_every_filter(image: tuple[int, int, list[bytes], list[int]]) -> None:
    width, channels, rows, filters = image
    decoded = decode_png(_png(width, channels, rows, filters))
    assert (decoded.width, decoded.height, decoded.channels) == (width, len(rows), channels)
    assert decoded.rows == rows


# --- the page in a browser ------------------------------------------------------------------


def test_the_page_renders_and_is_not_blank(chromium: str, tmp_path: Path) -> None:
    image = _screenshot(chromium, tmp_path, render_html(realistic_report()))
    assert (image.width, image.height) == (WIDTH, HEIGHT)
    colours = image.colours()
    # Text is anti-aliased: a drawn page has many shades; a blank or error page a handful.
    assert len(colours) > 50, colours.most_common(5)
    ink = 1 - colours[WHITE] / (WIDTH * HEIGHT)
    assert 0.02 < ink < 0.5, ink
    inked = image.inked_rows()
    # The report is longer than the window: something is drawn from the top to the bottom.
    assert inked[0] < 100
    assert inked[-1] > HEIGHT - 100
    assert len(inked) > HEIGHT // 2


def test_the_charts_are_drawn(chromium: str, tmp_path: Path) -> None:
    """A whole-page screenshot holds the charts' own colours: the inline SVG was drawn."""
    image = _screenshot(chromium, tmp_path, render_html(realistic_report()), height=5000)
    colours = image.colours()
    assert colours[P50_BLUE] > 50, "no p50 marker drawn"
    assert colours[BAR_BLUE] > 5_000, "no age bar drawn"


def test_the_hostile_and_the_empty_page_render_too(chromium: str, tmp_path: Path) -> None:
    for report in (hostile_report(), empty_report()):
        image = _screenshot(chromium, tmp_path, render_html(report))
        assert len(image.colours()) > 50
        assert image.inked_rows()[0] < 100


def test_the_page_prints_to_a_landscape_pdf_of_several_pages(chromium: str, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    page = _write(tmp_path, render_html(realistic_report()))
    _run(chromium, tmp_path, page, f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    assert len(data) > 20_000, len(data)
    assert data.rstrip().endswith(b"%%EOF")
    boxes = {tuple(float(v) for v in box.split()) for box in MEDIA_BOX.findall(data)}
    assert boxes, "no page size in the PDF"
    for _, _, width, height in boxes:  # @page { size: A4 landscape }: 842 x 595 points
        assert round(width) == 842 and round(height) == 595, (width, height)
    pages = [int(n) for n in PAGE_COUNT.findall(data)]
    assert pages and max(pages) >= 2, pages
