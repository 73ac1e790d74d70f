"""Runs a server-side pipeline through the official `inference-sdk` client (in .venv-sdk): starts it on a video with
a workflow, lists it, pauses and resumes it, consumes results until `--frames` frames came (or the pipeline ended
and nothing waits), reads its status, terminates it, and prints everything as JSON on stdout.

    .venv-sdk/bin/python tests/official_sdk/run_pipeline.py --url URL --spec FILE --video PATH --frames N
"""

from __future__ import annotations

import argparse
import json
import time

import supervision as sv
from inference_sdk import InferenceHTTPClient


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--video", required=True)
    parser.add_argument("--frames", type=int, required=True)
    parser.add_argument("--detections", default="tracked", help="the output read with supervision")
    parser.add_argument("--api-key", default="test-key")
    args = parser.parse_args()
    with open(args.spec) as file:
        specification = json.load(file)
    client = InferenceHTTPClient(api_url=args.url, api_key=args.api_key)
    started = client.start_inference_pipeline_with_workflow(video_reference=args.video,
                                                            workflow_specification=specification)
    pipeline_id = started["context"]["pipeline_id"]
    listed = client.list_inference_pipelines()
    paused, resumed = client.pause_inference_pipeline(pipeline_id), client.resume_inference_pipeline(pipeline_id)
    results, deadline = [], time.monotonic() + 90
    while len(results) < args.frames and time.monotonic() < deadline:
        answer = client.consume_inference_pipeline_result(pipeline_id, excluded_fields=["unused"])
        if not answer["outputs"]:
            time.sleep(0.05)
            continue
        (output,), (meta,) = answer["outputs"], answer["frames_metadata"]
        detections = sv.Detections.from_inference(output[args.detections])
        results.append({"output": output, "meta": meta, "tracker_id": (detections.tracker_id.tolist()
                        if detections.tracker_id is not None else None)})  # fmt: skip
    status = client.get_inference_pipeline_status(pipeline_id)
    terminated = client.terminate_inference_pipeline(pipeline_id)
    print(json.dumps({"started": started, "listed": listed, "paused": paused, "resumed": resumed,
                      "results": results, "status": status, "terminated": terminated,
                      "listed_after": client.list_inference_pipelines()}))  # fmt: skip


if __name__ == "__main__":
    main()
