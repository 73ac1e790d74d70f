"""Runs a workflow through the official `inference-sdk` client's `run_workflow` (in .venv-sdk) and prints its
outputs, and what `supervision` reads from the detections outputs named by --detections, as JSON on stdout.

    .venv-sdk/bin/python tests/official_sdk/run_workflow.py --url URL --spec FILE [--param k=JSON] NAME=IMAGE...
    .venv-sdk/bin/python tests/official_sdk/run_workflow.py --url URL --workspace W --workflow-id ID NAME=IMAGE...
"""

from __future__ import annotations

import argparse
import json

import supervision as sv
from inference_sdk import InferenceHTTPClient
from inference_sdk.http.errors import HTTPCallErrorError


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--spec", help="an inline definition (else --workspace and --workflow-id: a saved one)")
    parser.add_argument("--workspace")
    parser.add_argument("--workflow-id")
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--param", action="append", default=[], help="name=JSON value")
    parser.add_argument("--detections", action="append", default=[], help="outputs to read with supervision")
    parser.add_argument("images", nargs="+", help="input=path; repeat an input for a batch")
    args = parser.parse_args()

    images: dict[str, list[str]] = {}
    for item in args.images:
        name, _, path = item.partition("=")
        images.setdefault(name, []).append(path)
    parameters = {name: json.loads(value) for name, _, value in (item.partition("=") for item in args.param)}
    client = InferenceHTTPClient(api_url=args.url, api_key=args.api_key)
    specification = None
    if args.spec:
        with open(args.spec) as file:
            specification = json.load(file)
    try:
        outputs = client.run_workflow(
            workspace_name=args.workspace, workflow_id=args.workflow_id, specification=specification,
            images={name: paths if len(paths) > 1 else paths[0] for name, paths in images.items()},
            parameters=parameters or None,
        )
    except HTTPCallErrorError as error:
        print(json.dumps({"error": {"status_code": error.status_code, "message": error.api_message}}))
        return
    read = []
    for output in outputs:
        detections = {name: sv.Detections.from_inference(output[name]) for name in args.detections}
        read.append({name: {"xyxy": value.xyxy.tolist(), "class_name": value.data["class_name"].tolist()}
                     for name, value in detections.items()})  # fmt: skip
    print(json.dumps({"outputs": outputs, "supervision": read}))


if __name__ == "__main__":
    main()
