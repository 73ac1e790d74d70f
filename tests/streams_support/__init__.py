"""Real parts for the stream source tests: a video maker, local MJPEG/HLS HTTP servers, an RTSP server script."""
