#!/usr/bin/env python3
"""Draws assets/icon.png (256 x 256): a 6 x 6 attention map in viridis, a bright diagonal and a
few strong off-diagonal weights, on a dark rounded square. Needs Pillow.

    python3 tools/make_icon.py
"""
from pathlib import Path

from PIL import Image, ImageDraw

VIRIDIS = [(68, 1, 84), (72, 40, 120), (62, 74, 137), (49, 104, 142), (38, 130, 142),
           (31, 158, 137), (53, 183, 121), (109, 205, 89), (180, 222, 44), (253, 231, 37)]


def color(t: float) -> tuple[int, int, int]:
    t = max(0.0, min(1.0, t))
    x = t * (len(VIRIDIS) - 1)
    i = min(int(x), len(VIRIDIS) - 2)
    f = x - i
    return tuple(round(a + (b - a) * f) for a, b in zip(VIRIDIS[i], VIRIDIS[i + 1]))


def main() -> None:
    n, size, margin, gap, scale = 6, 256, 16, 6, 4
    weights = [[0.12] * n for _ in range(n)]
    for i in range(n):
        weights[i][i] = 0.55
    for i, j, w in [(0, 5, 0.95), (1, 0, 0.8), (2, 4, 0.7), (3, 1, 0.9), (4, 2, 0.6), (5, 3, 1.0),
                    (2, 0, 0.35), (4, 5, 0.3)]:
        weights[i][j] = w
    # Drawn 4x larger and shrunk, for smooth corners.
    img = Image.new("RGBA", (size * scale, size * scale), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle([0, 0, size * scale - 1, size * scale - 1], radius=44 * scale,
                           fill=(24, 24, 28, 255))
    cell = (size - 2 * margin - (n - 1) * gap) / n
    for i in range(n):
        for j in range(n):
            x0 = (margin + j * (cell + gap)) * scale
            y0 = (margin + i * (cell + gap)) * scale
            draw.rounded_rectangle([x0, y0, x0 + cell * scale, y0 + cell * scale], radius=7 * scale,
                                   fill=color(weights[i][j]) + (255,))
    out = Path(__file__).resolve().parent.parent / "assets" / "icon.png"
    img.resize((size, size), Image.LANCZOS).save(out, optimize=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
