"""A live feed of results for push subscribers (the stream routes serve it as Server-Sent Events).

`put` runs on the pipeline's thread, subscribers read from an asyncio route handler: each subscription has a small
queue of its own, guarded by a lock, and the pipeline thread wakes the subscriber's event loop with
`call_soon_threadsafe`. A slow subscriber loses its oldest messages (counted in `dropped`) and never holds up the
pipeline or the other subscribers. The annotated image a subscriber may ask for is drawn and JPEG-encoded at most
once per frame, on first ask, in a worker thread of the event loop rather than on the pipeline's thread; a queue
holds only its subscriber's most recent messages, so at most `queue_size` frames are kept for the feed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import cv2
import pybase64

from visionserve.images.annotate import JPEG_QUALITY, draw
from visionserve.streams.frames import FrameResult
from visionserve.streams.sinks.base import result_record

MAX_IMAGE_WIDTH = 1280


class TooManySubscribers(Exception):
    """The feed already has its maximum of subscribers (the route answers 429)."""


def annotated_jpeg_b64(result: FrameResult) -> str:
    """The frame with its predictions drawn, at most `MAX_IMAGE_WIDTH` wide, as base64 JPEG."""
    image = result.frame.image if result.predictions is None else draw(result.frame.image, result.predictions)
    height, width = image.shape[:2]
    if width > MAX_IMAGE_WIDTH:
        size = (MAX_IMAGE_WIDTH, max(round(height * MAX_IMAGE_WIDTH / width), 1))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 BGR image
        raise RuntimeError("JPEG encoding failed")
    return pybase64.b64encode(jpeg.tobytes()).decode("ascii")


class _Message:
    """One frame's message, shared by all subscriptions; keeps the frame only while some subscriber wants images."""

    def __init__(self, result: FrameResult, keep_frame: bool) -> None:
        self.record = result_record(result)
        self._result = result if keep_frame else None
        self._image: str | None = None
        self._lock = threading.Lock()

    def with_image(self) -> dict[str, Any]:
        with self._lock:
            if self._image is None and self._result is not None:
                self._image = annotated_jpeg_b64(self._result)
                self._result = None
        return {**self.record, "image": self._image}


class Subscription:
    """What one subscriber reads: `await next(timeout)` from the event loop it subscribed on."""

    def __init__(self, feed: LiveFeed, images: bool, queue_size: int, loop: asyncio.AbstractEventLoop) -> None:
        self.images = images
        self.dropped = 0
        self._feed = feed
        self._items: deque[_Message] = deque()
        self._size = queue_size
        self._lock = threading.Lock()
        self._loop = loop
        self._wakeup = asyncio.Event()
        self._ended = False

    @property
    def ended(self) -> bool:
        """True once the feed closed (or this subscription did) and every queued message was read."""
        with self._lock:
            return self._ended and not self._items

    async def next(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The oldest unread message; None when `timeout` seconds pass without one, or once `ended`."""
        ends = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if self._items:
                    message = self._items.popleft()
                    break
                if self._ended:
                    return None
                self._wakeup.clear()  # under the lock: a message pushed after this sets it again
            try:
                await asyncio.wait_for(self._wakeup.wait(), None if ends is None else max(ends - time.monotonic(), 0))
            except TimeoutError:
                return None
        if self.images:
            return await asyncio.to_thread(message.with_image)
        return dict(message.record)

    def close(self) -> None:
        """Unsubscribe (the client went away): frees the slot; `next` answers None from now on."""
        self._feed._remove(self)
        self._end(drop_queued=True)

    def _push(self, message: _Message) -> None:
        with self._lock:
            if self._ended:
                return
            if len(self._items) >= self._size:
                self._items.popleft()
                self.dropped += 1
            self._items.append(message)
        self._wake()

    def _end(self, drop_queued: bool) -> None:
        with self._lock:
            self._ended = True
            if drop_queued:
                self._items.clear()
        self._wake()

    def _wake(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._wakeup.set)
        except RuntimeError:  # the subscriber's loop is closed: nobody waits
            pass


class LiveFeed:
    def __init__(self, max_subscribers: int = 16, queue_size: int = 8) -> None:
        if max_subscribers < 1 or queue_size < 1:
            raise ValueError("max_subscribers and queue_size must be at least 1")
        self._max = max_subscribers
        self._queue_size = queue_size
        self._subscriptions: list[Subscription] = []
        self._lock = threading.Lock()
        self._closed = False
        self._left_dropped = 0  # messages lost by subscriptions that are gone

    def subscribe(self, images: bool = False) -> Subscription:
        """A new subscription, read from the running event loop; one made after `close` has already ended.
        Raises `TooManySubscribers` when `max_subscribers` are reading."""
        subscription = Subscription(self, images, self._queue_size, asyncio.get_running_loop())
        with self._lock:
            if self._closed:
                subscription._end(drop_queued=True)
                return subscription
            if len(self._subscriptions) >= self._max:
                raise TooManySubscribers(f"this stream already has {self._max} subscribers; try again later")
            self._subscriptions.append(subscription)
        return subscription

    def put(self, results: Sequence[FrameResult | None]) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions)
        if not subscriptions:
            return
        keep_frame = any(subscription.images for subscription in subscriptions)
        for result in results:
            if result is not None:
                message = _Message(result, keep_frame)
                for subscription in subscriptions:
                    subscription._push(message)

    def close(self) -> None:
        """Ends every subscription: each reads what it has queued, then `next` answers None."""
        with self._lock:
            self._closed = True
            subscriptions, self._subscriptions = self._subscriptions, []
            self._left_dropped += sum(subscription.dropped for subscription in subscriptions)
        for subscription in subscriptions:
            subscription._end(drop_queued=False)

    def status(self) -> dict[str, Any]:
        with self._lock:
            dropped = self._left_dropped + sum(subscription.dropped for subscription in self._subscriptions)
            return {"type": "feed", "subscribers": len(self._subscriptions), "max_subscribers": self._max,
                    "messages_dropped": dropped, "closed": self._closed}  # fmt: skip

    def _remove(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
                self._left_dropped += subscription.dropped
