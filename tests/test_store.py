import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from visionserve.cli import app
from visionserve.errors import InvalidModelIdError, ModelPackageError
from visionserve.models.builtin import BuiltinModels
from visionserve.models.manifest import ModelManifest, Task
from visionserve.models.store import ModelStore


def weights(tmp_path: Path) -> Path:
    path = tmp_path / "w.onnx"
    path.write_bytes(b"not really onnx, the store does not care")
    return path


def manifest(model_id: str) -> ModelManifest:
    return ModelManifest(model_id=model_id, task=Task.OBJECT_DETECTION, class_names=["a", "b"])


def test_add_find_list_remove(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    package = store.add(weights(tmp_path), manifest("proj/3"))
    assert package.weights_path == tmp_path / "models/proj/3/weights.onnx"
    stored = json.loads((tmp_path / "models/proj/3/manifest.json").read_text())
    assert stored["model_id"] == "proj/3" and stored["class_names"] == ["a", "b"] and len(stored["weights_sha256"]) == 64
    found = store.find("proj/3")
    assert found is not None and found.manifest.task is Task.OBJECT_DETECTION
    store.add(weights(tmp_path), manifest("single"))
    assert sorted(m.model_id for m in store.list()) == ["proj/3", "single"]
    assert store.remove("proj/3") and store.find("proj/3") is None
    assert not (tmp_path / "models/proj").exists()
    assert not store.remove("proj/3")
    assert not list((tmp_path / "models/.staging").iterdir())


def test_adding_twice_needs_replace(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.add(weights(tmp_path), manifest("p/1"))
    with pytest.raises(FileExistsError):
        store.add(weights(tmp_path), manifest("p/1"))
    replaced = store.add(weights(tmp_path), manifest("p/1").model_copy(update={"class_names": ["x"]}), replace=True)
    assert replaced.manifest.class_names == ["x"] and store.find("p/1").manifest.class_names == ["x"]


@pytest.mark.parametrize("bad", ["../etc", "a/../../b", "/abs/1", "a/b/c", "", ".hidden/1", "a b/1", "p/1\n"])
def test_ids_that_could_escape_the_store_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidModelIdError):
        ModelStore(tmp_path).find(bad)


def test_a_broken_manifest_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "p/1"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{broken")
    with pytest.raises(ModelPackageError, match="not a valid manifest"):
        ModelStore(tmp_path).find("p/1")


def test_builtin_default_model_reads_its_metadata() -> None:
    package = BuiltinModels().find("nudenet/1")
    assert package is not None and package.builtin
    assert package.manifest.input_size == (320, 320)
    assert len(package.manifest.class_names) == 18 and package.manifest.class_names[1] == "FACE_FEMALE"
    assert BuiltinModels().find("nudenet/2") is None


# --- what a killed writer leaves: cleaned by the model's next writer or load, never a live writer's ---

HOLD_THE_LOCK = """
import sys, time
from pathlib import Path
from visionserve.models.store import ModelStore
store = ModelStore(Path(sys.argv[1]))
with store.locked("p/1"):
    (store.staging_directory("p/1") / "weights.onnx.partial").write_bytes(b"x" * 262_144)
    print("holding", flush=True)
    time.sleep(120)
"""


def writer_holding_the_lock(root: Path) -> subprocess.Popen[str]:
    """Another process mid-download of p/1: it holds the model's lock and writes its staging."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(root)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "holding\n"
    return process


def staging_files(root: Path) -> list[Path]:
    return sorted(path for path in (root / ".staging").rglob("*") if path.is_file())


def test_a_live_writer_keeps_its_staging_and_a_killed_ones_goes_at_the_next_load(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    store.add(weights(tmp_path), manifest("p/1"))
    writer = writer_holding_the_lock(store.root)
    try:
        assert store.find("p/1") is not None
        assert sorted(path.name for path in staging_files(store.root)) == ["p__1.lock", "weights.onnx.partial"]
    finally:
        writer.kill()  # SIGKILL: nothing of its own is cleaned
        writer.wait()
    assert len(staging_files(store.root)) == 2
    assert store.find("p/1") is not None
    assert staging_files(store.root) == []


def test_models_add_cleans_what_a_killed_one_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONSERVE_HOME", str(tmp_path / "home"))
    root = tmp_path / "home/models"
    killed = writer_holding_the_lock(root)
    killed.kill()
    killed.wait()
    assert len(staging_files(root)) == 2
    model = BuiltinModels().find("nudenet/1").weights_path
    added = CliRunner().invoke(app, ["models", "add", str(model), "--id", "p/1"])
    assert added.exit_code == 0, added.output
    assert staging_files(root) == [] and (root / "p/1/weights.onnx").is_file()


def test_a_file_that_is_not_onnx_is_named_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    Path("junk.onnx").write_bytes(b"junk" * 100)
    added = CliRunner().invoke(app, ["models", "add", "junk.onnx", "--id", "junk/1"])
    assert added.exit_code == 1
    said = " ".join(added.output.split())
    assert "Load model from junk.onnx failed" in said and "junkonnx" not in said
