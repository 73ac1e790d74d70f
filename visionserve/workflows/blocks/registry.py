"""Every block this server has, by type id and alias: one `BLOCK` per module under `blocks/`, listed here.

To add a block: write its module (see `blocks/base.py` for the interface) and add its `BLOCK` to `BLOCKS`.
"""

from __future__ import annotations

from visionserve.workflows.blocks import (
    absolute_static_crop,
    blur_visualization,
    bounding_box_visualization,
    byte_tracker,
    classification_model,
    continue_if,
    data_aggregator,
    detection_offset,
    detections_consensus,
    detections_filter,
    detections_stitch,
    detections_transformation,
    dynamic_crop,
    expression,
    image_slicer,
    instance_segmentation_model,
    keypoint_detection_model,
    keypoint_visualization,
    label_visualization,
    line_counter,
    mask_visualization,
    object_detection_model,
    perspective_correction,
    polygon_visualization,
    property_definition,
    time_in_zone,
    webhook_sink,
)
from visionserve.workflows.blocks.base import BlockSpec

BLOCKS: tuple[BlockSpec, ...] = (
    *object_detection_model.BLOCKS,
    *instance_segmentation_model.BLOCKS,
    *classification_model.BLOCKS,
    *keypoint_detection_model.BLOCKS,
    dynamic_crop.BLOCK,
    absolute_static_crop.BLOCK,
    detections_filter.BLOCK,
    detection_offset.BLOCK,
    *image_slicer.BLOCKS,
    detections_stitch.BLOCK,
    detections_consensus.BLOCK,
    property_definition.BLOCK,
    continue_if.BLOCK,
    expression.BLOCK,
    detections_transformation.BLOCK,
    data_aggregator.BLOCK,
    webhook_sink.BLOCK,
    perspective_correction.BLOCK,
    *byte_tracker.BLOCKS,
    *line_counter.BLOCKS,
    *time_in_zone.BLOCKS,
    bounding_box_visualization.BLOCK,
    label_visualization.BLOCK,
    mask_visualization.BLOCK,
    polygon_visualization.BLOCK,
    keypoint_visualization.BLOCK,
    blur_visualization.BLOCK,
)

_BY_TYPE: dict[str, BlockSpec] = {type_id: block for block in BLOCKS for type_id in block.manifest.type_ids()}


def block_for(type_id: str) -> BlockSpec | None:
    """The block a step's `type` names (its type id or an alias), or None."""
    return _BY_TYPE.get(type_id)


def known_types() -> list[str]:
    return [block.type_id for block in BLOCKS]
