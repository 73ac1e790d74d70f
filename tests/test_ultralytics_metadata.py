from visionserve.models.manifest import Task
from visionserve.models.ultralytics import parse_metadata


def test_reads_ultralytics_export_metadata() -> None:
    meta = parse_metadata(
        {
            "task": "detect",
            "names": "{0: 'circle', 1: 'square', 2: 'triangle'}",
            "imgsz": "[160, 320]",
            "stride": "32",
            "args": "{'batch': 1, 'nms': False, 'dynamic': True}",
        }
    )
    assert meta.task is Task.OBJECT_DETECTION
    assert meta.class_names == ["circle", "square", "triangle"]
    assert meta.input_size == (160, 320)
    assert meta.stride == 32 and not meta.end_to_end


def test_nms_in_graph_and_end2end_flags() -> None:
    assert parse_metadata({"args": "{'nms': True}"}).end_to_end
    assert parse_metadata({"end2end": "True"}).end_to_end
    assert not parse_metadata({"end2end": "False"}).end_to_end


def test_other_tasks_and_single_side_size() -> None:
    assert parse_metadata({"task": "segment"}).task is Task.INSTANCE_SEGMENTATION
    assert parse_metadata({"task": "obb"}).task is Task.ORIENTED_OBJECT_DETECTION
    assert parse_metadata({"imgsz": "640"}).input_size == (640, 640)


def test_code_in_metadata_is_never_run(tmp_path) -> None:
    marker = tmp_path / "pwned"
    hostile = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    meta = parse_metadata({"names": hostile, "imgsz": hostile, "stride": hostile, "task": hostile, "args": hostile})
    assert not marker.exists()
    assert meta.class_names is None and meta.input_size is None and meta.stride is None and meta.task is None


def test_malformed_values_are_ignored() -> None:
    meta = parse_metadata({"names": "{0: 'a', 2: 'c'}", "imgsz": "[0, -1]", "stride": "'32'", "task": "dance"})
    assert meta.class_names is None and meta.input_size is None and meta.stride is None and meta.task is None
    assert parse_metadata({"names": "['a', 'b']"}).class_names == ["a", "b"]
