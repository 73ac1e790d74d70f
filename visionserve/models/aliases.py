"""Public model aliases, resolved to Roboflow model ids as the reference server and the official SDK do."""

from __future__ import annotations

_SIZES = ("n", "s", "m", "l", "x")


def _series(template: str, project: str, versions: tuple[int, ...], sizes: tuple[str, ...] = _SIZES) -> dict[str, str]:
    return {template.format(size=size): f"{project}/{version}" for size, version in zip(sizes, versions)}


def _both_yolo11_spellings(aliases: dict[str, str]) -> dict[str, str]:
    """The reference accepts `yolo11n-640` as well as `yolov11n-640`."""
    return {**aliases, **{name.replace("yolov11", "yolo11"): target for name, target in aliases.items()}}


ALIASES: dict[str, str] = {
    **_series("yolov8{size}-640", "coco", (3, 6, 8, 7, 5)),
    **_series("yolov8{size}-1280", "coco", (9, 10, 11, 12, 13)),
    **_series("yolov8{size}-seg-640", "coco-dataset-vdnr1", (2, 4, 5, 6, 3)),
    **_series("yolov8{size}-seg-1280", "coco-dataset-vdnr1", (7, 8, 9, 10, 11)),
    **_series("yolov8{size}-pose-640", "coco-pose-detection", (1, 2, 3, 4, 5)),
    "yolov8x-pose-1280": "coco-pose-detection/6",
    **_series("yolov10{size}-640", "coco", (19, 20, 21, 22, 23, 24), ("n", "s", "m", "b", "l", "x")),
    **_both_yolo11_spellings(
        {
            **_series("yolov11{size}-640", "coco", (25, 26, 27, 28, 29)),
            **_series("yolov11{size}-1280", "coco", (30, 31, 32, 33, 34)),
            **_series("yolov11{size}-seg-640", "coco-dataset-vdnr1", (19, 20, 21, 22, 23)),
        }
    ),
    **_series("yolo-nas-{size}-640", "coco", (14, 15, 16), ("s", "m", "l")),
    "rfdetr-base": "coco/36",
    "rfdetr-nano": "coco/38",
    "rfdetr-small": "coco/39",
    "rfdetr-medium": "coco/40",
    "rfdetr-large": "coco/50",
    "rfdetr-xlarge": "coco/47",
    "rfdetr-2xlarge": "coco/48",
    **{f"resnet{depth}": f"classifiers/{index}" for index, depth in enumerate((18, 34, 50, 101), start=1)},
    **_series("yolo26{size}-640", "coco", (41, 42, 43, 44, 45)),
    **_series("yolo26{size}-pose-640", "coco-pose-detection", (12, 13, 14, 15, 16)),
}


def resolve_alias(model_id: str) -> str:
    return ALIASES.get(model_id, model_id)
