"""Files in and out: stacks (TIFF, OME-TIFF, ImageJ, NIfTI, npy), 2D images, pyramidal slides, axes.

Everything that touches a file format lives here, and only here: the reader returns a
:class:`Stack` (array, axes string, voxel spacing, unit), the writer takes one back and writes
atomically (temporary name, then rename), so no caller ever sees a half-written file.
The axes module maps any axes string to volsr's canonical (C, Z, Y, X) layout and back.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "SUPPORTED_LETTERS": "axes",
    "canonical_shape": "axes",
    "default_axes": "axes",
    "from_canonical": "axes",
    "parse_axes": "axes",
    "to_canonical": "axes",
    "IMAGE_SUFFIXES": "images_2d",
    "PLAIN_2D_SUFFIXES": "images_2d",
    "read_image_2d": "images_2d",
    "read_stack": "reading",
    "TiffLevel": "slides",
    "open_level": "slides",
    "read_level": "slides",
    "NIFTI_EXTENSIONS": "stacks",
    "NUMPY_EXTENSIONS": "stacks",
    "SUPPORTED_EXTENSIONS": "stacks",
    "TIFF_EXTENSIONS": "stacks",
    "Stack": "stacks",
    "check_measured_planes": "stacks",
    "AXES_ANNOTATION_KEY": "tiff",
    "MEASURED_PLANES_KEY": "tiff",
    "normalize_unit": "units",
    "copy_tiff": "writing",
    "write_stack": "writing",
    "write_tiled_tiff": "writing",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
