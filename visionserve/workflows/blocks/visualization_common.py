"""What the visualisation blocks share: their manifests' common properties (the reference's names and defaults),
the colour of each detection (`color_axis`), checks of values that selectors resolve at run time, and the block
itself: draw on the image (or on a copy, `copy_image`) and answer it as the step's `image` output."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import AliasChoices, ConfigDict, Field

from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import BlockManifest, BlockSpec, Output, StepInputs, per_element, selector
from visionserve.workflows.blocks.drawing import BGR, PALETTE_NAMES, TextStyle, palette, parse_color
from visionserve.workflows.errors import StepInputError
from visionserve.workflows.values import Detections, WorkflowImage

ColorAxis = Literal["INDEX", "CLASS", "TRACK"]
PaletteName = Literal[PALETTE_NAMES]  # type: ignore[valid-type]


class VisualizationManifest(BlockManifest):
    model_config = ConfigDict(json_schema_extra={"block_type": "visualization", "license": "Apache-2.0"})

    image: selector(kinds.IMAGE) = Field(  # type: ignore[valid-type]
        validation_alias=AliasChoices("image", "images"), description="The image to draw on."
    )
    predictions: selector(*kinds.DETECTIONS) = Field(  # type: ignore[valid-type]
        description="The detections to draw, made on that image."
    )
    copy_image: bool | selector(kinds.BOOLEAN) = Field(  # type: ignore[valid-type]
        default=True,
        description="Draw on a copy (true) or on the image itself (false: cheaper when visualisations are "
        "chained and the undrawn image is not needed).",
    )


class ColorableManifest(VisualizationManifest):
    color_palette: PaletteName | selector(kinds.STRING) = Field(  # type: ignore[valid-type]
        default="DEFAULT", description="The colours detections are drawn in."
    )
    palette_size: int | selector(kinds.INTEGER) = Field(  # type: ignore[valid-type]
        default=10, description="How many colours a Matplotlib palette is sampled into."
    )
    custom_colors: list[str] | selector(kinds.LIST_OF_VALUES) = Field(  # type: ignore[valid-type]
        default=[], description="The colours of color_palette CUSTOM (#RRGGBB, rgb(R, G, B), names)."
    )
    color_axis: ColorAxis | selector(kinds.STRING) = Field(  # type: ignore[valid-type]
        default="CLASS", description="Which palette colour a detection gets: by its class, index or tracker id."
    )


MAX_THICKNESS = 1000


class OutlineManifest(ColorableManifest):
    """Blocks that draw lines (boxes, polygons): their thickness."""

    thickness: int | selector(kinds.INTEGER) = Field(  # type: ignore[valid-type]
        default=2, description="Line thickness in pixels."
    )


def integer(inputs: StepInputs, name: str, low: int, high: int) -> int:
    """A whole-number property within [low, high] (a selector may have resolved to anything)."""
    value = inputs[name]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise StepInputError(f"{name} must be a whole number from {low} to {high}, not {value!r}.")
    return int(value)


def number(inputs: StepInputs, name: str, low: float, high: float) -> float:
    value = inputs[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise StepInputError(f"{name} must be a number from {low} to {high}, not {value!r}.")
    return float(value)


def text_style(inputs: StepInputs, radius_property: str) -> TextStyle:
    """The checked text_color, text_scale, text_thickness, text_padding and corner radius of label boxes."""
    return TextStyle(
        parse_color(inputs["text_color"]), number(inputs, "text_scale", 0.05, 20.0),
        integer(inputs, "text_thickness", 1, 50), integer(inputs, "text_padding", 0, 500),
        integer(inputs, radius_property, 0, 500),
    )  # fmt: skip


def detection_colors(inputs: StepInputs, detections: Detections) -> list[BGR]:
    """Each detection's colour: the palette's entry for its class id, its index or its tracker id."""
    colors = palette(inputs["color_palette"], integer(inputs, "palette_size", 1, 256), inputs["custom_colors"])
    axis = inputs["color_axis"]
    if axis == "CLASS":
        keys = detections.class_id
    elif axis == "INDEX":
        keys = np.arange(len(detections))
    elif axis == "TRACK":
        if detections.tracker_id is None:
            raise StepInputError("color_axis TRACK needs tracked detections (e.g. from a byte tracker step).")
        keys = detections.tracker_id
    else:
        raise StepInputError(f"Unknown color_axis {axis!r}; use CLASS, INDEX or TRACK.")
    return [colors[int(key) % len(colors)] for key in keys]


def within_reach(xy: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(x, y) pairs clipped to a margin around the image: what lies beyond stays out of sight, and OpenCV only
    takes 32-bit coordinates (a far-off or NaN value would otherwise fail the step)."""
    height, width = shape[:2]
    margin = MAX_THICKNESS + 1
    pairs = np.nan_to_num(np.asarray(xy, dtype=np.float64)).reshape(-1, 2)
    return pairs.clip([-margin, -margin], [width + margin, height + margin]).reshape(np.shape(xy))


def box_corners(detections: Detections, shape: tuple[int, ...]) -> np.ndarray:
    """Integer (x1, y1, x2, y2) of every box, truncated as the reference's annotators do."""
    return within_reach(detections.xyxy, shape).astype(np.int32)


def polygon_points(detections: Detections, shape: tuple[int, ...]) -> list[np.ndarray]:
    """Each instance's polygon as OpenCV's integer points, or [] when the detections have no masks."""
    if detections.polygons is None:
        return []
    return [np.round(within_reach(polygon, shape)).astype(np.int32).reshape(-1, 1, 2)
            for polygon in detections.polygons]  # fmt: skip


Draw = Callable[[np.ndarray, Detections, StepInputs], None]


def _canvas(image: WorkflowImage, copy_image: object) -> np.ndarray:
    if not isinstance(copy_image, bool):
        raise StepInputError(f"copy_image must be true or false, not {copy_image!r}.")
    if copy_image or not image.pixels.flags.writeable:
        return image.pixels.copy()
    return image.pixels


def visualization_block(manifest: type[VisualizationManifest], draw: Draw, human_name: str) -> BlockSpec:
    """A block that draws `draw(canvas, detections, inputs)` and outputs the drawn image (same lineage)."""

    def run(step: VisualizationManifest, inputs: StepInputs, context: Any) -> dict[str, WorkflowImage]:
        image, detections = inputs["image"], inputs["predictions"]
        if not isinstance(image, WorkflowImage):
            raise StepInputError(f"image must be an image, not {type(image).__name__}.")
        if not isinstance(detections, Detections):
            raise StepInputError(f"predictions must be detections, not {type(detections).__name__}.")
        canvas = _canvas(image, inputs["copy_image"])
        if len(detections):
            draw(canvas, detections, inputs)
        return {"image": image.with_pixels(canvas)}

    return BlockSpec(manifest, (Output("image", (kinds.IMAGE,)),), per_element(run), human_name=human_name)
