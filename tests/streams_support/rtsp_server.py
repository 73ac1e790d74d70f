"""A tiny RTSP server for tests: a live H.264 test pattern at rtsp://127.0.0.1:PORT/test.

Run with Debian's /usr/bin/python3 (it has python3-gi; the project's venv cannot import gi):
    /usr/bin/python3 tests/streams_support/rtsp_server.py PORT [tcp|udp]
The optional second argument restricts the server to that transport (both by default). Prints READY once it
listens; serves until killed. Needs gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good (rtph264pay),
gstreamer1.0-plugins-ugly (x264enc) and python3-gi.
"""

from __future__ import annotations

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

PIPELINE = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=160,height=120,framerate=30/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 ! rtph264pay name=pay0 pt=96 config-interval=1 )"
)


def main() -> None:
    port = int(sys.argv[1])
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)
    if len(sys.argv) > 2:
        transports = {"tcp": GstRtsp.RTSPLowerTrans.TCP, "udp": GstRtsp.RTSPLowerTrans.UDP}
        factory.set_protocols(transports[sys.argv[2]])
    server.get_mount_points().add_factory("/test", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print("READY", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
