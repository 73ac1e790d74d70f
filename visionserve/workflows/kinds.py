"""Kinds: the names the reference gives to the types of values flowing between steps, and which may feed which.

A selector property declares the kinds it accepts and a block output the kinds it makes; the compiler refuses a
connection whose kinds share nothing, unless either side is the wildcard `*`.
"""

from __future__ import annotations

from collections.abc import Iterable

WILDCARD = "*"
IMAGE = "image"
VIDEO_METADATA = "video_metadata"
OBJECT_DETECTION = "object_detection_prediction"
INSTANCE_SEGMENTATION = "instance_segmentation_prediction"
KEYPOINT_DETECTION = "keypoint_detection_prediction"
CLASSIFICATION = "classification_prediction"
BOOLEAN = "boolean"
INTEGER = "integer"
FLOAT = "float"
FLOAT_ZERO_TO_ONE = "float_zero_to_one"
STRING = "string"
DICTIONARY = "dictionary"
LIST_OF_VALUES = "list_of_values"
INFERENCE_ID = "inference_id"
ROBOFLOW_MODEL_ID = "roboflow_model_id"
ROBOFLOW_PROJECT = "roboflow_project"
PARENT_ID = "parent_id"
IMAGE_METADATA = "image_metadata"
POINT = "point"
ZONE = "zone"

DETECTIONS = (OBJECT_DETECTION, INSTANCE_SEGMENTATION, KEYPOINT_DETECTION)  # every kind a Detections value has

KIND_DESCRIPTIONS: dict[str, str] = {
    WILDCARD: "Any value.",
    IMAGE: "An image (BGR pixels, with its parent's id and origin).",
    VIDEO_METADATA: "Where a frame comes from: video id, frame number, timestamp, fps.",
    OBJECT_DETECTION: "Boxes with class and confidence (serialised as the reference's detection JSON).",
    INSTANCE_SEGMENTATION: "Boxes with a polygon mask each.",
    KEYPOINT_DETECTION: "Boxes with named keypoints each.",
    CLASSIFICATION: "A classification answer (single- or multi-label), as /infer/classification gives it.",
    BOOLEAN: "true or false.",
    INTEGER: "An integer.",
    FLOAT: "A number.",
    FLOAT_ZERO_TO_ONE: "A number from 0 to 1.",
    STRING: "A string.",
    DICTIONARY: "A JSON object.",
    LIST_OF_VALUES: "A JSON list.",
    INFERENCE_ID: "The id of a model inference.",
    ROBOFLOW_MODEL_ID: "A model id, project/version.",
    ROBOFLOW_PROJECT: "A project name.",
    PARENT_ID: "The id of the image a value was made from.",
    IMAGE_METADATA: "An image's size and ids.",
    POINT: "An (x, y) point.",
    ZONE: "A polygon: a list of (x, y) points.",
}


def compatible(produced: Iterable[str], accepted: Iterable[str]) -> bool:
    """True when a value of one of `produced` kinds may go where `accepted` kinds are expected."""
    produced, accepted = set(produced), set(accepted)
    return WILDCARD in produced or WILDCARD in accepted or bool(produced & accepted)


def describe_kinds(names: Iterable[str]) -> list[dict[str, str]]:
    """Kinds as `/workflows/blocks/describe` lists them."""
    return [{"name": name, "description": KIND_DESCRIPTIONS.get(name, ""), "docs": ""} for name in names]
