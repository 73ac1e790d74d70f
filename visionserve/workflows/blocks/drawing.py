"""Pixels for the visualisation blocks: colours as the reference spells them, its palettes, rounded boxes and
text boxes, drawn with OpenCV on BGR uint8 images.

Colours are BGR tuples (OpenCV's order); the palettes and colour names are the reference's (supervision's).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from visionserve.workflows.errors import StepInputError

BGR = tuple[int, int, int]

FONT = cv2.FONT_HERSHEY_SIMPLEX

# The reference's named colours (what its `text_color`/`color` accept by name, any case).
NAMED_COLORS = {"WHITE": "#FFFFFF", "BLACK": "#000000", "RED": "#FF0000", "GREEN": "#00FF00", "BLUE": "#0000FF",
                "YELLOW": "#FFFF00", "ROBOFLOW": "#A351FB"}  # fmt: skip

# supervision's ColorPalette.DEFAULT and ColorPalette.ROBOFLOW, as hex RGB.
DEFAULT_PALETTE = ("#A351FB", "#FF4040", "#FFA1A0", "#FF7633", "#FFB633", "#D1D435", "#4CFB12", "#94CF1A",
                   "#40DE8A", "#1B9640", "#00D6C1", "#2E9CAA", "#00C4FF", "#364797", "#6675FF", "#0019EF",
                   "#863AFF", "#530087", "#CD3AFF", "#FF97CA", "#FF39C9")  # fmt: skip
ROBOFLOW_PALETTE = ("#C28DFC", "#A351FB", "#8315F9", "#6706CE", "#5905B3", "#4D049A")

# The reference's continuous Matplotlib palettes, from OpenCV's copies of those maps (no matplotlib needed).
COLOR_MAPS = {"Matplotlib Viridis": cv2.COLORMAP_VIRIDIS, "Matplotlib Plasma": cv2.COLORMAP_PLASMA,
              "Matplotlib Inferno": cv2.COLORMAP_INFERNO, "Matplotlib Magma": cv2.COLORMAP_MAGMA,
              "Matplotlib Cividis": cv2.COLORMAP_CIVIDIS}  # fmt: skip
PALETTE_NAMES = ("DEFAULT", "CUSTOM", "ROBOFLOW", *COLOR_MAPS)
MAX_PALETTE_SIZE = 256

_HEX = re.compile(r"^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_TRIPLE = re.compile(r"^(rgb|bgr)\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)$")


def parse_color(text: object) -> BGR:
    """`#RRGGBB`, `#RGB`, `rgb(R, G, B)`, `bgr(B, G, R)` or a colour name (WHITE, black, ...), as BGR."""
    if not isinstance(text, str):
        raise StepInputError(f"A colour must be a string, not {type(text).__name__}.")
    spelled = NAMED_COLORS.get(text.strip().upper(), text.strip())
    if _HEX.match(spelled):
        digits = spelled[1:] if len(spelled) == 7 else "".join(c * 2 for c in spelled[1:])
        red, green, blue = (int(digits[i : i + 2], 16) for i in (0, 2, 4))
        return blue, green, red
    triple = _TRIPLE.match(spelled)
    if triple and all(int(part) <= 255 for part in triple.groups()[1:]):
        first, second, third = (int(part) for part in triple.groups()[1:])
        return (third, second, first) if triple.group(1) == "rgb" else (first, second, third)
    raise StepInputError(
        f"Invalid colour {text!r}; valid formats are #RRGGBB, rgb(R, G, B), bgr(B, G, R) or a colour name "
        f"({', '.join(NAMED_COLORS)})."
    )


def palette(name: object, size: int, custom_colors: object) -> list[BGR]:
    """The colours of a palette the reference names (`color_palette`); `size` samples the Matplotlib ones."""
    if name == "DEFAULT":
        return [parse_color(color) for color in DEFAULT_PALETTE]
    if name == "ROBOFLOW":
        return [parse_color(color) for color in ROBOFLOW_PALETTE]
    if name == "CUSTOM":
        if not isinstance(custom_colors, list) or not custom_colors:
            raise StepInputError("color_palette CUSTOM needs custom_colors: a non-empty list of colours.")
        return [parse_color(color) for color in custom_colors]
    if isinstance(name, str) and name in COLOR_MAPS:
        if not 1 <= size <= MAX_PALETTE_SIZE:
            raise StepInputError(f"palette_size must be from 1 to {MAX_PALETTE_SIZE}, not {size}.")
        steps = np.round(np.linspace(0, 255, size)).astype(np.uint8).reshape(-1, 1)
        colors = cv2.applyColorMap(steps, COLOR_MAPS[name]).reshape(-1, 3)
        return [(int(b), int(g), int(r)) for b, g, r in colors]
    raise StepInputError(f"Unknown color_palette {name!r}; this server has {', '.join(PALETTE_NAMES)}.")


def rounded_rectangle(
    canvas: np.ndarray, corners: Sequence[int], color: BGR, thickness: int, radius: int
) -> None:
    """A rectangle (x1, y1, x2, y2) with corners of `radius` pixels; thickness -1 fills it."""
    x1, y1, x2, y2 = corners
    radius = max(0, min(radius, (x2 - x1) // 2, (y2 - y1) // 2))
    if radius == 0:
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        return
    centers = ((x1 + radius, y1 + radius, 180), (x2 - radius, y1 + radius, 270),
               (x2 - radius, y2 - radius, 0), (x1 + radius, y2 - radius, 90))  # fmt: skip
    if thickness < 0:
        cv2.rectangle(canvas, (x1 + radius, y1), (x2 - radius, y2), color, -1)
        cv2.rectangle(canvas, (x1, y1 + radius), (x2, y2 - radius), color, -1)
    else:
        for start, end in (((x1 + radius, y1), (x2 - radius, y1)), ((x2, y1 + radius), (x2, y2 - radius)),
                           ((x1 + radius, y2), (x2 - radius, y2)), ((x1, y1 + radius), (x1, y2 - radius))):
            cv2.line(canvas, start, end, color, thickness)
    for cx, cy, angle in centers:
        cv2.ellipse(canvas, (cx, cy), (radius, radius), angle, 0, 90, color, thickness)


@dataclass(frozen=True)
class TextStyle:
    color: BGR
    scale: float
    thickness: int
    padding: int  # between the text and its box's edges
    radius: int = 0  # of the box's corners


def text_box(
    canvas: np.ndarray, text: str, anchor: tuple[float, float], alignment: tuple[float, float], background: BGR,
    style: TextStyle,
) -> tuple[int, int, int, int]:  # fmt: skip
    """Text on a filled box placed at `anchor` shifted by `alignment` times the box's size (e.g. (0, -1): the
    box's bottom-left at the anchor), kept inside the image so it stays readable; returns the box."""
    (text_width, text_height), baseline = cv2.getTextSize(text, FONT, style.scale, style.thickness)
    width, height = text_width + 2 * style.padding, text_height + baseline + 2 * style.padding
    x1 = int(anchor[0] + alignment[0] * width)
    y1 = int(anchor[1] + alignment[1] * height)
    image_height, image_width = canvas.shape[:2]
    x1 = min(max(x1, 0), max(image_width - width, 0))
    y1 = min(max(y1, 0), max(image_height - height, 0))
    rounded_rectangle(canvas, (x1, y1, x1 + width, y1 + height), background, -1, style.radius)
    origin = (x1 + style.padding, y1 + style.padding + text_height)
    cv2.putText(canvas, text, origin, FONT, style.scale, style.color, style.thickness, cv2.LINE_AA)
    return x1, y1, x1 + width, y1 + height
