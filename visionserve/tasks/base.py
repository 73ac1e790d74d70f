"""What every task shares: input size, batching, one warm-up pass at load, and request options."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np

from visionserve.errors import ModelPackageError
from visionserve.images.decode import DecodedImage, NeededScale
from visionserve.models.manifest import ModelManifest, ResizeMode, Task
from visionserve.observe import timed
from visionserve.runtime.batching import DynamicBatcher
from visionserve.runtime.onnx_model import RUNTIME_ERRORS, OnnxModel
from visionserve.runtime.parallel import cpu_map
from visionserve.tasks.adjust import adjust
from visionserve.tasks.preprocess import ImageTransform, InputSpec, build_input_batch

DEFAULT_INPUT_SIZE = (640, 640)
Options = Mapping[str, Any]
ResponseFields = dict[str, Any]


def option(options: Options, name: str, default: Any) -> Any:
    """A request option, with None (absent or explicit null) meaning the default."""
    value = options.get(name)
    return default if value is None else value


def confidence_option(options: Options, default: float) -> float:
    """Numeric confidence, or the model's default for the reference's "best"/"default" keywords."""
    value = options.get("confidence")
    return default if value is None or isinstance(value, str) else float(value)


def resolve_input_size(manifest: ModelManifest, runner: OnnxModel) -> tuple[int, int]:
    """A fixed ONNX input shape wins; a dynamic one takes the manifest's size, else 640×640."""
    fixed = runner.input_hw
    if manifest.resize is ResizeMode.SHORT_SIDE:
        side = manifest.input_size
        if fixed or (side and side[0] != side[1]):
            raise ModelPackageError(
                "short-side resizing needs an ONNX input of dynamic height and width, and one side length "
                f"(the input is {list(fixed or ('dynamic',))}, the size {list(side or ('default',))})"
            )
    if fixed and manifest.input_size and tuple(manifest.input_size) != fixed:
        raise ModelPackageError(
            f"manifest input size {list(manifest.input_size)} differs from the ONNX input {list(fixed)}"
        )
    return fixed or (tuple(manifest.input_size) if manifest.input_size else DEFAULT_INPUT_SIZE)


class Predictor(ABC):
    """Runs one model on a list of decoded images and shapes each result like the reference's JSON."""

    task: ClassVar[Task]
    one_image_per_pass = False  # set for graphs that answer only the first image of a batch

    def __init__(self, manifest: ModelManifest, runner: OnnxModel, max_batch_size: int) -> None:
        self.manifest = manifest
        self.runner = runner
        self.input_hw = resolve_input_size(manifest, runner)
        self.max_batch_size = max_batch_size
        self.batcher: DynamicBatcher | None = None  # set by the loader when passes of requests may merge
        self.spec = self.input_spec()
        probe = np.zeros((runner.batch_size or 1, 3, *self.input_hw), dtype=np.float32)
        try:
            self.configure(runner.run(probe))
        except RUNTIME_ERRORS as error:
            raise ModelPackageError(f"cannot serve {manifest.model_id} as {manifest.task.value}: {error}") from None

    @property
    def batchable(self) -> bool:
        """Whether passes of several requests may be merged: a dynamic batch axis that answers every image."""
        return self.runner.batch_size is None and not self.one_image_per_pass

    @property
    def class_names(self) -> list[str]:
        return self.manifest.class_names

    def class_name(self, class_id: int) -> str:
        names = self.class_names
        return names[class_id] if 0 <= class_id < len(names) else str(class_id)

    def input_spec(self) -> InputSpec:
        """How this model wants its pixels; families with other conventions override it."""
        manifest = self.manifest
        return InputSpec(
            size=self.input_hw,
            resize=manifest.resize,
            pad_value=manifest.pad_value,
            normalization=manifest.normalization,
            antialias=manifest.resize in (ResizeMode.CENTER_CROP, ResizeMode.SHORT_SIDE),  # torchvision on PIL
            crop_fraction=manifest.crop_fraction,
        )

    @abstractmethod
    def configure(self, warmup: list[np.ndarray]) -> None:
        """Check the outputs of the warm-up pass (a blank batch) and remember how to read them."""

    @abstractmethod
    def parse_options(self, options: Options) -> Any:
        """Request options (already type-checked by the API) → this task's parameters."""

    @abstractmethod
    def postprocess(self, outputs: list[np.ndarray], transform: ImageTransform, params: Any) -> ResponseFields:
        """One image's outputs (batch axis removed) → `predictions` and any task-level response fields."""

    def needed_scale(self, options: Options) -> NeededScale | None:
        """How much of an image's size this model looks at, so large JPEGs can be decoded smaller; None when it
        needs every pixel (a static crop works on the full image)."""
        if self.manifest.preprocessing.static_crop is not None and not options.get("disable_preproc_static_crop"):
            return None
        height, width = self.input_hw
        if self.spec.resize is ResizeMode.LETTERBOX:
            return lambda w, h: min(height / h, width / w)
        cover = 1.0 / self.spec.crop_fraction if self.spec.resize is ResizeMode.CENTER_CROP else 1.0
        return lambda w, h: max(height / h, width / w) * cover  # stretch and centre crop fill both sides

    def chunk_size(self, count: int) -> int:
        """Images per forward pass: the fixed batch size, or an even share per concurrent run (so a batch keeps
        every run busy), at most `max_batch_size`."""
        if self.spec.resize is ResizeMode.SHORT_SIDE:  # each image has an input size of its own
            return 1
        if self.runner.batch_size:
            return self.runner.batch_size
        if self.one_image_per_pass:
            return 1
        return max(1, min(self.max_batch_size, math.ceil(count / self.runner.concurrent_runs)))

    def predict(self, images: list[DecodedImage], options: Options) -> list[ResponseFields]:
        params = self.parse_options(options)
        size = self.chunk_size(len(images))
        chunks = [images[start : start + size] for start in range(0, len(images), size)]
        alone = len(chunks) == 1  # one pass may widen; several run side by side
        answers = cpu_map(lambda chunk: self._predict_chunk(chunk, options, params, alone), chunks)
        return [fields for chunk_answers in answers for fields in chunk_answers]

    def _predict_chunk(
        self, chunk: list[DecodedImage], options: Options, params: Any, may_widen: bool
    ) -> list[ResponseFields]:
        with timed("preprocess"):
            adjusted = [adjust(image, self.manifest.preprocessing, options) for image in chunk]
            tensor, transforms = build_input_batch([image for image, _, _ in adjusted], self.spec, self.runner.batch_size)
        with timed("inference"):
            outputs = (self.batcher or self.runner).run(tensor, may_widen)
        with timed("postprocess"):
            return [
                self.postprocess(
                    image_outputs,
                    replace(transform, offset_x=x, offset_y=y, image_width=image.width, image_height=image.height),
                    params,
                )
                for image_outputs, transform, (_, x, y), image in zip(
                    self.per_image(outputs, len(chunk)), transforms, adjusted, chunk
                )
            ]

    def per_image(self, outputs: list[np.ndarray], count: int) -> list[list[np.ndarray]]:
        """Each of the first `count` images' outputs, batch axis removed."""
        return [[output[index] for output in outputs] for index in range(count)]
