"""Runs the official Roboflow `inference-sdk` client (in its own venv, .venv-sdk) against a server and prints
the results, and what `supervision` makes of them, as JSON on stdout.

    .venv-sdk/bin/python tests/official_sdk/run_client.py --url URL --model ID [--v0] [--arrays] IMAGE...
"""

from __future__ import annotations

import argparse
import json

import cv2
import supervision as sv
from inference_sdk import InferenceConfiguration, InferenceHTTPClient
from inference_sdk.http.errors import HTTPCallErrorError


def summarise(result: dict) -> dict:
    """The result, and what supervision builds from it (classification results are not for supervision)."""
    if "top" in result or isinstance(result.get("predictions"), dict):
        return {"result": result}
    detections = sv.Detections.from_inference(result)
    summary = {
        "result": result,
        "detections": {
            "xyxy": detections.xyxy.tolist(),
            "class_name": detections.data["class_name"].tolist(),
            "confidence": detections.confidence.tolist(),
            "mask_pixels": detections.mask.sum(axis=(1, 2)).tolist() if detections.mask is not None else None,
        },
    }
    if any("keypoints" in prediction for prediction in result["predictions"]):
        keypoints = sv.KeyPoints.from_inference(result)
        summary["keypoints"] = {"xy": keypoints.xy.tolist(), "confidence": keypoints.confidence.tolist()}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--v0", action="store_true", help="use the legacy /{project}/{version} route")
    parser.add_argument("--arrays", action="store_true", help="send numpy arrays (read by OpenCV), not paths")
    parser.add_argument("--max-batch-size", type=int, default=1)
    parser.add_argument("--max-concurrent-requests", type=int, default=1)
    parser.add_argument("--confidence", type=float, default=None)
    parser.add_argument("images", nargs="+")
    args = parser.parse_args()

    client = InferenceHTTPClient(api_url=args.url, api_key=args.api_key)
    if args.v0:
        client.select_api_v0()
    client.configure(
        InferenceConfiguration(
            confidence_threshold=args.confidence,
            max_batch_size=args.max_batch_size,
            max_concurrent_requests=args.max_concurrent_requests,
        )
    )
    images = [cv2.imread(path) for path in args.images] if args.arrays else list(args.images)
    try:
        result = client.infer(images if len(images) > 1 else images[0], model_id=args.model)
    except HTTPCallErrorError as error:
        print(json.dumps({"error": {"status_code": error.status_code, "message": error.api_message}}))
        return
    results = result if isinstance(result, list) else [result]
    print(json.dumps({"results": [summarise(item) for item in results]}))


if __name__ == "__main__":
    main()
