"""Videos uploaded for stream pipelines (the playground's Stream tab): the raw request body saved under a random name
in the server's uploads folder, which pipelines may read without VISIONSERVE_STREAM_FILE_ROOTS.

Only a file that PyAV reads as a video in a plain container (MP4/MOV, Matroska/WebM, AVI) is kept: a playlist
(HLS) or a concat list would make a pipeline read other files (outside every allowed folder) or URLs. The folder is
bounded, oldest uploads deleted first; a pipeline still reading a deleted file keeps reading it (the open file
stays)."""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from pathlib import Path

import av
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from visionserve.api.schemas import ErrorResponse
from visionserve.api.state import ServerState
from visionserve.errors import VisionServeError
from visionserve.streams.builder import uploads_folder

MAX_UPLOADS = 8  # videos kept in the uploads folder
MAX_UPLOADS_BYTES = 1 << 30  # their total size
WRITE_BYTES = 1 << 20  # body bytes gathered before each write
UPLOAD_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi")
# The demuxers an upload may be read with (ffmpeg's names; mov reads mp4 too, matroska webm), with the extension an
# upload gets when neither its name nor its type gives one.
_DEMUXERS = {"mov": ".mp4", "matroska": ".mkv", "avi": ".avi"}
_TYPE_EXTENSIONS = {"video/mp4": ".mp4", "video/quicktime": ".mov", "video/x-matroska": ".mkv", "video/webm": ".webm",
                    "video/x-msvideo": ".avi", "video/avi": ".avi", "video/msvideo": ".avi"}  # fmt: skip
_PART = ".part"  # a body still arriving, or being checked; never counted or offered as an upload
_pruning = threading.Lock()

_ERRORS = {400: "Not a video this server reads, or an empty body.", 401: "A key is needed.",
           413: "Too large (bytes, or pixels per frame).", 415: "Not sent as video/* or application/octet-stream."}
router = APIRouter(
    prefix="/inference_pipelines", tags=["stream pipelines"],
    responses={code: {"model": ErrorResponse, "description": text} for code, text in _ERRORS.items()},
)  # fmt: skip


class UploadRefused(VisionServeError):
    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


def _extension(filename: str | None, content_type: str) -> str | None:
    """The upload's extension from `?filename=`, else from its Content-Type; None leaves it to the container."""
    if filename:
        suffix = Path(filename).suffix.lower()
        if suffix not in UPLOAD_EXTENSIONS:
            allowed = ", ".join(UPLOAD_EXTENSIONS)
            raise UploadRefused(f"{filename!r}: uploads must be videos ending in one of {allowed}.")
        return suffix
    return _TYPE_EXTENSIONS.get(content_type)


def _checked_demuxer(path: Path, max_pixels: int) -> str:
    """The demuxer that reads `path` as a video whose first frame decodes; raises UploadRefused otherwise. ffmpeg's
    own probe picks it, as it will for the pipeline, but `format_whitelist` refuses any demuxer not allowed here (a
    playlist's, a concat list's) before it reads past the probe, so nothing else is ever opened."""
    options = {"protocol_whitelist": "file", "format_whitelist": ",".join(_DEMUXERS)}
    try:
        with av.open(str(path), container_options=options) as container:
            if not container.streams.video:
                raise UploadRefused("The upload has no video stream.")
            stream = container.streams.video[0]
            if stream.width * stream.height > max_pixels:
                raise UploadRefused(f"The video's frames are {stream.width}x{stream.height}, more than the "
                                    f"{max_pixels} pixels this server reads (VISIONSERVE_MAX_IMAGE_PIXELS).", 413)
            next(container.decode(video=0))
            return container.format.name.split(",")[0]
    except StopIteration:
        problem = "no frame decodes"
    except (av.FFmpegError, ValueError, UnicodeDecodeError) as error:
        problem = str(error)
    raise UploadRefused(f"The upload is not a video this server reads (MP4/MOV, Matroska/WebM or AVI): {problem}.")


def prune(folder: Path, keep: Path, max_files: int = MAX_UPLOADS, max_bytes: int = MAX_UPLOADS_BYTES) -> list[Path]:
    """Delete the oldest uploads until at most `max_files` of them, `max_bytes` in all, are left; `keep` (the one
    just saved) stays whatever its size. Returns what was deleted."""
    with _pruning:
        uploads = []
        for path in folder.iterdir():
            if path.suffix in UPLOAD_EXTENSIONS and path != keep:
                try:
                    stat = path.stat()
                except FileNotFoundError:  # deleted meanwhile
                    continue
                uploads.append((stat.st_mtime_ns, path, stat.st_size))
        uploads.sort()
        count = len(uploads) + 1
        total = sum(size for _, _, size in uploads) + keep.stat().st_size
        deleted = []
        for _, path, size in uploads:
            if count <= max_files and total <= max_bytes:
                break
            path.unlink(missing_ok=True)
            deleted.append(path)
            count, total = count - 1, total - size
        return deleted


async def _receive(request: Request, part: Path) -> int:
    """Write the body to `part` as it arrives (the server's body-size limit stops it early); its size. Writes go to
    a thread a megabyte at a time, so a slow disk never holds the event loop."""
    size = 0
    pending = bytearray()
    with part.open("xb") as file:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_UPLOADS_BYTES:
                raise UploadRefused(f"The video is larger than the {MAX_UPLOADS_BYTES} bytes kept for uploads.", 413)
            pending += chunk
            if len(pending) >= WRITE_BYTES:
                await asyncio.to_thread(file.write, bytes(pending))
                pending.clear()
        await asyncio.to_thread(file.write, bytes(pending))
    return size


_BODY = {"required": True, "content": {"video/*": {"schema": {"type": "string", "format": "binary"}},
                                       "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}


@router.post("/uploads", summary="Upload a video for pipelines to read (ours; the playground's Stream tab)",
             openapi_extra={"requestBody": _BODY})  # fmt: skip
async def upload_video(
    request: Request,
    filename: str | None = Query(None, max_length=255, description="The file's name, for its extension."),
) -> JSONResponse:
    """The body is the video itself. Answers `{"video_reference": <absolute path>}` for `initialise`."""
    state: ServerState = request.app.state.visionserve
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (content_type.startswith("video/") or content_type == "application/octet-stream"):
        raise UploadRefused("Send the video as the body, with Content-Type video/* or application/octet-stream.", 415)
    extension = _extension(filename, content_type)
    folder = uploads_folder(state.settings).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    name = secrets.token_hex(16)
    part = folder / f".{name}{_PART}"
    try:
        if not await _receive(request, part):
            raise UploadRefused("The body is empty: send the video's bytes.")
        demuxer = await state.in_worker(_checked_demuxer, part, state.settings.max_image_pixels)
        final = folder / f"{name}{extension or _DEMUXERS[demuxer]}"
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)
    await state.in_worker(prune, folder, final)
    return JSONResponse({"video_reference": str(final)})
