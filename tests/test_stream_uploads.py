"""Video uploads for stream pipelines against a real server: a PyAV-made video is saved under a random name in the
uploads folder and a pipeline reads it with no VISIONSERVE_STREAM_FILE_ROOTS; bodies that are not a video in an
allowed container (a photo, text, an HLS playlist) are refused and leave nothing behind; the folder keeps at most
MAX_UPLOADS videos, oldest deleted first; and the body-size limit and access keys apply."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import httpx
import pytest

from tests.conftest import FIXTURES, Server, fixture_models_home
from tests.test_stream_pipelines import FRAMES, make_video
from visionserve.api.routes.stream_uploads import MAX_UPLOADS, UPLOAD_EXTENSIONS, prune

UPLOADS = "/inference_pipelines/uploads"
MP4 = {"Content-Type": "video/mp4"}


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The same moving picture in three containers, by extension."""
    folder = tmp_path_factory.mktemp("videos")
    made = {}
    for extension in (".mp4", ".mkv", ".avi"):
        make_video(folder / f"moving{extension}")
        made[extension] = (folder / f"moving{extension}").read_bytes()
    return made


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """No VISIONSERVE_STREAM_FILE_ROOTS: uploads are the only local videos pipelines may read."""
    running = Server(fixture_models_home(tmp_path_factory.mktemp("uploads-home"))).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def uploads_folder(server: Server) -> Path:
    return server.home / "stream-uploads"


def saved(server: Server) -> list[Path]:
    """Every file in the uploads folder, temporary ones included."""
    folder = uploads_folder(server)
    return sorted(folder.iterdir()) if folder.exists() else []


def finished_report(http: httpx.Client, pipeline_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = http.get(f"/inference_pipelines/{pipeline_id}/status").json()["report"]
        if report["state"] in ("ENDED", "ERROR"):
            return report
        time.sleep(0.1)
    raise AssertionError(f"pipeline {pipeline_id} did not finish: {report}")


@pytest.mark.parametrize("extension", [".mp4", ".mkv", ".avi"])
def test_an_uploaded_video_is_saved_under_a_random_name_and_a_pipeline_reads_it(
    server: Server, http: httpx.Client, videos: dict[str, bytes], extension: str
) -> None:
    answer = http.post(UPLOADS, params={"filename": f"my clip{extension}"}, content=videos[extension],
                       headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    path = Path(answer.json()["video_reference"])
    assert path.is_absolute() and path.parent == uploads_folder(server).resolve()
    assert path.suffix == extension and "clip" not in path.name
    assert path.read_bytes() == videos[extension]
    assert not [p for p in saved(server) if p.name.startswith(".")], "no temporary file is left"

    started = http.post("/inference_pipelines/initialise", json={"model_id": "shapes-detect/1",
                                                                  "video_reference": str(path)})  # fmt: skip
    assert started.status_code == 200, started.text
    pipeline_id = started.json()["context"]["pipeline_id"]
    report = finished_report(http, pipeline_id)
    assert report["state"] == "ENDED", report
    assert report["sources"][0]["frames_inferred"] == FRAMES
    http.post(f"/inference_pipelines/{pipeline_id}/terminate")


def test_the_extension_comes_from_the_content_type_else_from_the_container(
    server: Server, http: httpx.Client, videos: dict[str, bytes]
) -> None:
    by_type = http.post(UPLOADS, content=videos[".mkv"], headers={"Content-Type": "video/x-matroska"})
    assert by_type.status_code == 200, by_type.text
    assert by_type.json()["video_reference"].endswith(".mkv")
    by_container = http.post(UPLOADS, content=videos[".avi"], headers={"Content-Type": "application/octet-stream"})
    assert by_container.status_code == 200, by_container.text
    assert by_container.json()["video_reference"].endswith(".avi")


@pytest.mark.parametrize(
    "body, filename, reason",
    [
        ((FIXTURES / "images" / "detect_0.jpg").read_bytes(), None, "a photo"),
        (b"just some text, not a video\n" * 50, "notes.mp4", "text named .mp4"),
    ],
)
def test_a_body_that_is_not_a_video_is_refused_and_deleted(
    server: Server, http: httpx.Client, body: bytes, filename: str | None, reason: str
) -> None:
    before = saved(server)
    answer = http.post(UPLOADS, params={"filename": filename} if filename else {}, content=body, headers=MP4)
    assert answer.status_code == 400, f"{reason}: {answer.text}"
    assert "not a video this server reads" in answer.json()["message"]
    assert saved(server) == before


@pytest.mark.parametrize("kind", ["hls", "concat"])
def test_a_list_naming_a_video_outside_the_allowed_folders_is_refused(
    server: Server, http: httpx.Client, tmp_path: Path, kind: str
) -> None:
    """Such a list, opened as one, reads the file it names (checked here first): it never passes as a video."""
    elsewhere = tmp_path / "elsewhere.mp4"
    make_video(elsewhere)
    listing = (f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.2,\n{elsewhere}\n#EXT-X-ENDLIST\n" if kind == "hls"
               else f"ffconcat version 1.0\nfile {elsewhere}\n")  # fmt: skip
    (tmp_path / "list").write_text(listing)
    with av.open(str(tmp_path / "list"), format=kind, container_options={"safe": "0"} if kind == "concat" else {}) as c:
        assert len(list(c.decode(video=0))) == FRAMES  # what a pipeline would have shown
    before = saved(server)
    answer = http.post(UPLOADS, params={"filename": "clip.mp4"}, content=listing.encode(), headers=MP4)
    assert answer.status_code == 400, answer.text
    assert "not a video this server reads" in answer.json()["message"]
    assert saved(server) == before


def test_a_wrong_extension_a_wrong_type_and_an_empty_body_are_refused(
    server: Server, http: httpx.Client, videos: dict[str, bytes]
) -> None:
    before = saved(server)
    wrong_name = http.post(UPLOADS, params={"filename": "clip.exe"}, content=videos[".mp4"], headers=MP4)
    assert wrong_name.status_code == 400
    assert all(extension in wrong_name.json()["message"] for extension in UPLOAD_EXTENSIONS)
    wrong_type = http.post(UPLOADS, content=videos[".mp4"], headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415 and "video/*" in wrong_type.json()["message"]
    empty = http.post(UPLOADS, content=b"", headers=MP4)
    assert empty.status_code == 400 and "empty" in empty.json()["message"]
    assert saved(server) == before


def test_the_folder_keeps_the_newest_uploads_only(server: Server, http: httpx.Client, videos: dict[str, bytes]) -> None:
    references = []
    for _ in range(MAX_UPLOADS + 2):
        answer = http.post(UPLOADS, content=videos[".mp4"], headers=MP4)
        assert answer.status_code == 200, answer.text
        references.append(Path(answer.json()["video_reference"]))
    assert saved(server) == sorted(references[2:])  # the two oldest of these, and every earlier one, are gone
    gone = http.post("/inference_pipelines/initialise", json={"model_id": "shapes-detect/1",
                                                               "video_reference": str(references[0])})  # fmt: skip
    assert gone.status_code == 400 and "does not exist" in gone.json()["message"]


def test_pruning_deletes_the_oldest_until_both_bounds_hold(tmp_path: Path) -> None:
    files = []
    for index, size in enumerate([300, 200, 100, 50]):
        path = tmp_path / f"{index}.mp4"
        path.write_bytes(b"x" * size)
        files.append(path)
        time.sleep(0.01)  # distinct modification times, oldest first
    (tmp_path / ".upload.part").write_bytes(b"x" * 1000)  # still arriving: neither counted nor deleted
    assert prune(tmp_path, files[3], max_files=3, max_bytes=10_000) == [files[0]]
    assert prune(tmp_path, files[3], max_files=3, max_bytes=140) == [files[1], files[2]]
    assert sorted(tmp_path.iterdir()) == [tmp_path / ".upload.part", files[3]]
    assert prune(tmp_path, files[3], max_files=1, max_bytes=10) == []  # the new one stays, whatever its size


def test_the_body_limit_and_access_keys_apply(start_server: Callable[..., Server], videos: dict[str, bytes]) -> None:
    limit = len(videos[".mp4"]) - 1
    guarded = start_server({"VISIONSERVE_API_KEYS": "sesame", "VISIONSERVE_MAX_BODY_BYTES": str(limit)})
    with guarded.client() as client:
        assert client.post(UPLOADS, content=videos[".mp4"], headers=MP4).status_code == 401
        wrong_key = {**MP4, "Authorization": "Bearer nope"}
        assert client.post(UPLOADS, content=videos[".mp4"], headers=wrong_key).status_code == 403
        with_key = {**MP4, "Authorization": "Bearer sesame"}
        too_large = client.post(UPLOADS, content=videos[".mp4"], headers=with_key)
        assert too_large.status_code == 413, too_large.text
        small = videos[".mp4"][: limit // 2]  # within the limit, but its index (at the end) is cut off
        assert client.post(UPLOADS, content=small, headers=with_key).status_code == 400
    assert saved(guarded) == []
