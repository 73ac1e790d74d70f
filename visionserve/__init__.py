"""visionserve: a self-hosted HTTP inference server for computer-vision models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("visionserve")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
