"""SAHI done by `supervision.InferenceSlicer` (in .venv-sdk) against a server: each slice goes to the server's
`/infer/object_detection` (as a lossless PNG); prints the slice boxes and the stitched detections as JSON.

    .venv-sdk/bin/python tests/official_sdk/sahi_slicer.py --url URL --model ID --image PNG --slice W H \
        --overlap OW OH --filter non_max_suppression --iou 0.3
"""

from __future__ import annotations

import argparse
import base64
import json

import cv2
import numpy as np
import requests
import supervision as sv


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--slice", nargs=2, type=int, required=True, help="width height")
    parser.add_argument("--overlap", nargs=2, type=int, required=True, help="width height, in pixels")
    parser.add_argument("--filter", default="non_max_suppression")
    parser.add_argument("--iou", type=float, default=0.3)
    args = parser.parse_args()

    image = cv2.imread(args.image)
    session = requests.Session()

    def callback(tile: np.ndarray) -> sv.Detections:
        ok, data = cv2.imencode(".png", tile)
        assert ok
        body = {"model_id": args.model, "image": {"type": "base64", "value": base64.b64encode(data).decode()}}
        response = session.post(f"{args.url}/infer/object_detection", json=body, timeout=120)
        response.raise_for_status()
        return sv.Detections.from_inference(response.json())

    slicer = sv.InferenceSlicer(callback, slice_wh=tuple(args.slice), overlap_wh=tuple(args.overlap),
                                overlap_filter=args.filter, iou_threshold=args.iou)  # fmt: skip
    detections = slicer(image)
    offsets = sv.InferenceSlicer._generate_offset(
        (image.shape[1], image.shape[0]), tuple(args.slice), tuple(args.overlap)
    )
    print(json.dumps({
        "slices": offsets.tolist(), "xyxy": detections.xyxy.tolist(), "confidence": detections.confidence.tolist(),
        "class_name": detections.data["class_name"].tolist(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
