# Everything a fresh machine needs: `make serve` runs the server, `make test` the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Roboflow's trackers (ByteTrack), without its opencv-python requirement: pyproject lists what it needs besides.
TRACKERS := trackers==2.6.1
# The test extras (pytest, schemathesis, playwright, scikit-image...): `make serve` never installs them.
TEST_STAMP := $(VENV)/.installed-test
# The official Roboflow client and supervision, for interoperability tests. Their pins (numpy<2.4,
# opencv-python, pillow<13) clash with ours, so they live in a venv of their own.
SDK_VENV := .venv-sdk
SDK_STAMP := $(SDK_VENV)/.installed
SDK_REQUIREMENTS := inference-sdk==1.8.3 supervision==0.30.9
# Ultralytics and a CPU torch, only to remake the fixture models (`make fixtures`; `make test` never retrains).
FIXTURES_VENV := .venv-fixtures
FIXTURES_STAMP := $(FIXTURES_VENV)/.installed
# Genuine RF-DETR exports (rfdetr's own export, random weights) and rfdetr's own predictions on them, for the RF-DETR
# tests. ~600 MB, so `make test` builds them (1-4 minutes on 2 cores) into a cache folder named after a hash of
# the script, the pins and the test images, and skips the build while that folder is complete (`done` in it).
# The OpenVINO build of ONNX Runtime, in a venv of its own: it installs the same `onnxruntime` module as the CPU
# build (pip keeps both listed, the files of the last one installed win), so it never goes into $(VENV).
OPENVINO_VENV := .venv-openvino
OPENVINO_STAMP := $(OPENVINO_VENV)/.installed
OPENVINO_ORT := onnxruntime-openvino==1.24.1
RFDETR_VENV := .venv-rfdetr
RFDETR_STAMP := $(RFDETR_VENV)/.installed
RFDETR_REQUIREMENTS := torch==2.13.0 torchvision==0.28.0 rfdetr==1.11.2 ultralytics==8.4.190 onnx==1.23.2 onnxruntime==1.32.0
RFDETR_INPUTS := tools/make_rfdetr_fixtures.py $(foreach i,detect_0 detect_4 detect_5 segment_0 segment_1,tests/fixtures/images/$(i).jpg)
FIXTURE_CACHE ?= $(HOME)/.cache/visionserve-fixtures
RFDETR_KEY := $(shell { cat $(RFDETR_INPUTS); echo '$(RFDETR_REQUIREMENTS)'; } | sha256sum | cut -c1-12)
RFDETR_FIXTURES := $(FIXTURE_CACHE)/rfdetr-$(RFDETR_KEY)
# Training checkpoints (Ultralytics best.pt trained a few epochs, RF-DETR checkpoint_best_total.pth) and each
# family's own predictions on them, for `models add CHECKPOINT` (~250 MB, 1-3 minutes on 2 cores); the tests export
# them with the RF-DETR venv's Python (VISIONSERVE_EXPORT_PYTHON), the test venv itself has no torch.
CHECKPOINT_INPUTS := tools/make_checkpoint_fixtures.py tools/make_fixtures.py tools/make_rfdetr_fixtures.py \
	$(foreach i,detect_0 detect_4 detect_5 pose_0 pose_1 segment_0 segment_1,tests/fixtures/images/$(i).jpg)
CHECKPOINT_KEY := $(shell { cat $(CHECKPOINT_INPUTS); echo '$(RFDETR_REQUIREMENTS)'; } | sha256sum | cut -c1-12)
CHECKPOINT_FIXTURES := $(FIXTURE_CACHE)/checkpoints-$(CHECKPOINT_KEY)
EXPORT_PYTHON := $(CURDIR)/$(RFDETR_VENV)/bin/python
# Models of real size for `make bench` (LR-ASPP MobileNetV3-Large, ResNet-18 and a sigmoid ResNet-18, random
# weights: ~100 MB, under a minute on 2 cores), built by the RF-DETR venv's torchvision into a cache folder.
BENCH_MODELS_INPUTS := tools/make_bench_models.py tools/make_semantic_fixtures.py tools/make_yolo_nas_fixtures.py
BENCH_MODELS_KEY := $(shell { cat $(BENCH_MODELS_INPUTS); echo '$(RFDETR_REQUIREMENTS)'; } | sha256sum | cut -c1-12)
BENCH_MODELS := $(FIXTURE_CACHE)/bench-models-$(BENCH_MODELS_KEY)

.PHONY: install serve test test-openvino bench bench-ray fuzz soak fixtures rfdetr-fixtures family-fixtures \
	yolo-nas-fixtures semantic-fixtures clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m pip install --quiet --no-deps $(TRACKERS)
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

$(SDK_STAMP):
	$(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SDK_VENV)/bin/python -m pip install --quiet $(SDK_REQUIREMENTS)
	touch $(SDK_STAMP)

$(FIXTURES_STAMP):
	$(PYTHON) -m venv $(FIXTURES_VENV)
	$(FIXTURES_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FIXTURES_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(FIXTURES_VENV)/bin/python -m pip install --quiet ultralytics==8.4.190 torchvision==0.28.0 onnx onnxslim onnxruntime
	touch $(FIXTURES_STAMP)

$(RFDETR_STAMP):
	$(PYTHON) -m venv $(RFDETR_VENV)
	$(RFDETR_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(RFDETR_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(RFDETR_VENV)/bin/python -m pip install --quiet $(RFDETR_REQUIREMENTS)
	touch $(RFDETR_STAMP)

$(OPENVINO_STAMP):
	$(PYTHON) -m venv $(OPENVINO_VENV)
	$(OPENVINO_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(OPENVINO_VENV)/bin/python -m pip install --quiet -e '.[openvino]' 'pytest>=8.0' 'pytest-timeout>=2.3' 'scikit-image>=0.22'
	$(OPENVINO_VENV)/bin/python -m pip install --quiet --no-deps $(TRACKERS)
	$(OPENVINO_VENV)/bin/python -m pip uninstall --quiet -y onnxruntime onnxruntime-openvino
	$(OPENVINO_VENV)/bin/python -m pip install --quiet --no-deps $(OPENVINO_ORT)
	touch $(OPENVINO_STAMP)

# yolox 0.3.0 is an sdist that pins onnx==1.8.1 / onnxruntime==1.8.0 and imports torch at build time: build it
# against the venv's torch without its pins, and add the few dependencies its imports need.
$(FIXTURES_VENV)/.families-installed: $(FIXTURES_STAMP)
	$(FIXTURES_VENV)/bin/python -m pip install --quiet loguru tabulate tqdm pycocotools
	$(FIXTURES_VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation yolox==0.3.0
	touch $@

# Slow and opt-in (`make test` uses the committed files): RT-DETR, YOLOX, torchvision, YOLO26 sem/depth and
# dynamic+nms fixtures with each package's own expected answers, rebuilt into tests/fixtures/families.
family-fixtures: $(FIXTURES_VENV)/.families-installed
	$(FIXTURES_VENV)/bin/python tools/make_family_fixtures.py tests/fixtures/families $(ARGS)

# super-gradients 3.7.1 (YOLO-NAS) pins 2023-era packages (onnxruntime 1.15, protobuf 3.20, torchmetrics 0.8...):
# installed without them, with only what its import and `model.export()` need. Opt-in, like family-fixtures.
YOLO_NAS_VENV := .venv-yolo-nas
YOLO_NAS_REQUIREMENTS := torchvision==0.28.0 onnx==1.23.2 onnxruntime==1.32.0 "setuptools<81" psutil omegaconf \
	hydra-core termcolor tqdm einops json-tricks Deprecated stringcase treelib rapidfuzz jsonschema scipy \
	opencv-python-headless matplotlib torchmetrics pygments boto3 onnxsim tensorboard requests imagesize \
	data-gradients onnx-graphsurgeon

$(YOLO_NAS_VENV)/.installed:
	$(PYTHON) -m venv $(YOLO_NAS_VENV)
	$(YOLO_NAS_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(YOLO_NAS_VENV)/bin/python -m pip install --quiet $(YOLO_NAS_REQUIREMENTS)
	$(YOLO_NAS_VENV)/bin/python -m pip install --quiet --no-deps super-gradients==3.7.1
	touch $@

yolo-nas-fixtures: $(YOLO_NAS_VENV)/.installed
	$(YOLO_NAS_VENV)/bin/python tools/make_yolo_nas_fixtures.py tests/fixtures/yolo_nas

# Opt-in too: a torchvision LR-ASPP export, and torchvision's and Ultralytics' per-pixel answers (semantic.json).
semantic-fixtures: $(FIXTURES_STAMP)
	$(FIXTURES_VENV)/bin/python tools/make_semantic_fixtures.py tests/fixtures/families

rfdetr-fixtures: $(RFDETR_FIXTURES)/done

# The script builds into a temporary sibling folder, writes `done` last and renames it into place.
$(RFDETR_FIXTURES)/done: | $(RFDETR_STAMP)
	$(RFDETR_VENV)/bin/python tools/make_rfdetr_fixtures.py $(RFDETR_FIXTURES)

.PHONY: checkpoint-fixtures
checkpoint-fixtures: $(CHECKPOINT_FIXTURES)/done

$(CHECKPOINT_FIXTURES)/done: | $(RFDETR_STAMP)
	$(RFDETR_VENV)/bin/python tools/make_checkpoint_fixtures.py $(CHECKPOINT_FIXTURES)

# `server status` lists the server as started by `make serve`.
serve: $(STAMP)
	VISIONSERVE_STARTED_BY='make serve' $(BIN)/visionserve serve $(ARGS)

# pytest-xdist workers, one test file each at a time (a file's module fixtures, e.g. the Ray cluster, start once);
# most tests wait on servers and subprocesses, so two workers on 2 cores cut the wall time. One file, one process:
# make test TEST_WORKERS=0 PYTEST_ARGS=tests/test_x.py
TEST_WORKERS ?= 2

test: $(TEST_STAMP) $(SDK_STAMP) $(RFDETR_FIXTURES)/done $(CHECKPOINT_FIXTURES)/done
	VISIONSERVE_RFDETR_FIXTURES=$(RFDETR_FIXTURES) VISIONSERVE_CHECKPOINT_FIXTURES=$(CHECKPOINT_FIXTURES) \
		VISIONSERVE_EXPORT_PYTHON=$(EXPORT_PYTHON) $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The provider tests and the CPU/OpenVINO comparison under the OpenVINO build (`make test` runs them on the CPU
# build, where the OpenVINO ones are skipped).
test-openvino: $(OPENVINO_STAMP) $(RFDETR_FIXTURES)/done
	$(OPENVINO_VENV)/bin/python -m pytest tests/test_providers.py tests/test_runtime.py $(PYTEST_ARGS)
	VISIONSERVE_RFDETR_FIXTURES=$(RFDETR_FIXTURES) $(OPENVINO_VENV)/bin/python -m benchmarks.providers $(ARGS)

# wrk, the C load generator the benchmarks prefer (a Python client on the same cores takes CPU from the server it
# measures): installed from Debian when we are root; otherwise the benchmarks use their Python client and say so.
WRK := command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	{ apt-get install -y -qq wrk || { apt-get update -qq && apt-get install -y -qq wrk; }; } >/dev/null 2>&1; } || \
	echo "wrk is not installed (apt-get install wrk): load will come from the Python client"

$(BENCH_MODELS)/done: | $(RFDETR_STAMP) $(YOLO_NAS_VENV)/.installed
	$(RFDETR_VENV)/bin/python tools/make_bench_models.py $(BENCH_MODELS) --yolo-nas-python $(YOLO_NAS_VENV)/bin/python

bench: $(TEST_STAMP) $(RFDETR_FIXTURES)/done $(BENCH_MODELS)/done
	@$(WRK)
	VISIONSERVE_RFDETR_FIXTURES=$(RFDETR_FIXTURES) VISIONSERVE_BENCH_MODELS=$(BENCH_MODELS) \
		$(BIN)/python -m benchmarks.suite $(ARGS)

fuzz: $(TEST_STAMP)
	$(BIN)/python tools/fuzz.py --max-examples 300 $(ARGS)

soak: $(TEST_STAMP)
	$(BIN)/python -m benchmarks.soak $(ARGS)

# Ray Serve (2 model workers) vs the single-process server on this machine's cores; 8 models on 2 x 4.
bench-ray: $(TEST_STAMP)
	@$(WRK)
	$(BIN)/python -m benchmarks.ray_bench $(ARGS)

# Slow and opt-in: train every fixture model again (about 11 minutes on 2 cores) into build/fixtures, then run
# the task tests against the fresh models. To replace the committed ones: tools/make_fixtures.py tests/fixtures.
fixtures: $(TEST_STAMP) $(SDK_STAMP) $(FIXTURES_STAMP)
	rm -rf build/fixtures
	$(FIXTURES_VENV)/bin/python tools/make_fixtures.py build/fixtures
	VISIONSERVE_TEST_FIXTURES=$(CURDIR)/build/fixtures $(BIN)/python -m pytest tests/test_tasks.py tests/test_official_sdk.py

clean:
	rm -rf $(VENV) $(SDK_VENV) $(FIXTURES_VENV) $(RFDETR_VENV) $(YOLO_NAS_VENV) $(OPENVINO_VENV) .pytest_cache build
