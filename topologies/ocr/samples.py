"""Deterministic sample images for the OCR cascade: lines of English words and numbers.

Every image is white with black text rendered in a TrueType font when one is installed
(Pillow's scalable built-in font otherwise); every third image is rotated by 180 degrees
so that the angle classifier has something to turn back, and every second image has
short lines only (which the recogniser reads at its narrowest input width).

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     [p.name for p in make_samples(tmp, 2)]
['sample_00.png', 'sample_01.png']
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:/Windows/Fonts/arial.ttf",
)
WORDS = ("invoice", "total", "order", "stream", "model", "kafka", "agent", "batch",
         "ticket", "station", "north", "river", "green", "paper", "signal", "window")
WIDTH, MARGIN, FONT_SIZE, LINE_GAP = 480, 24, 28, 18


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for candidate in FONT_CANDIDATES:
        if Path(candidate).is_file():
            return ImageFont.truetype(candidate, size)
    return ImageFont.load_default(size=size)


def _line(rng: random.Random, short: bool) -> str:
    if short:
        return rng.choice([rng.choice(WORDS).capitalize(), str(rng.randint(10, 99999))])
    words = [rng.choice(WORDS).capitalize(), *rng.sample(WORDS, rng.randint(1, 2))]
    words.insert(rng.randint(1, len(words)), str(rng.randint(10, 99999)))
    return " ".join(words)


def make_image(rng: random.Random, rotate: bool = False, short: bool = False) -> Image.Image:
    """One RGB image of 5 to 8 text lines, upside down when ``rotate`` is true; each line is
    one word or one number when ``short`` is true, 2 to 3 words and a number otherwise.

    Nearly square, since the detector enlarges an image until its short side is 736.
    """
    font = _font(FONT_SIZE)
    lines = [_line(rng, short) for _ in range(rng.randint(5, 8))]
    height = 2 * MARGIN + len(lines) * (FONT_SIZE + LINE_GAP)
    image = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(image)
    for i, text in enumerate(lines):
        draw.text((MARGIN, MARGIN + i * (FONT_SIZE + LINE_GAP)), text, fill="black", font=font)
    return image.rotate(180) if rotate else image


def make_samples(folder: str | Path, n: int = 6, seed: int = 7) -> list[Path]:
    """Write ``n`` PNG images ``sample_NN.png`` into ``folder`` and return their paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for i in range(n):
        path = out / f"sample_{i:02d}.png"
        make_image(rng, rotate=i % 3 == 2, short=i % 2 == 1).save(path)
        paths.append(path)
    return paths
