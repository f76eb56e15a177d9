"""Frame sources: read videos lazily from arrays, image folders, video files, TIFF stacks, streams.

>>> from sam2_plugins.io import open_frames
>>> src = open_frames("video.mp4")          # or a folder, .tif, array, list, generator
>>> src.num_frames, src.height, src.width    # num_frames is None for streams
>>> frame = src.get(0)                       # (H, W) or (H, W, C) numpy array, own dtype

Heavy optional dependencies (PyAV, tifffile) are imported only when such a file is opened.
"""

from .arrays import ArraySource, SequenceSource
from .base import FrameSizeError, FrameSource
from .folder import IMAGE_EXTENSIONS, ImageFilesSource, ImageFolderSource, sort_frame_files
from .open import open_frames
from .stream import StreamSource
from .tiff import TiffSource
from .video import VIDEO_EXTENSIONS, VideoFileSource

__all__ = [
    "open_frames",
    "FrameSource",
    "FrameSizeError",
    "ArraySource",
    "SequenceSource",
    "ImageFolderSource",
    "ImageFilesSource",
    "VideoFileSource",
    "TiffSource",
    "StreamSource",
    "sort_frame_files",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
]
