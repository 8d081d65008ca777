"""Files in and out: stacks (TIFF, OME-TIFF, ImageJ, NIfTI, npy), 2D images, pyramidal slides, axes.

Everything that touches a file format lives here, and only here: the reader returns a
:class:`Stack` (array, axes string, voxel spacing, unit), the writer takes one back and writes
atomically (temporary name, then rename), so no caller ever sees a half-written file.
The axes module maps any axes string to volsr's canonical (C, Z, Y, X) layout and back.
"""


from .axes import (  # noqa: F401
    SUPPORTED_LETTERS,
    canonical_shape,
    default_axes,
    from_canonical,
    parse_axes,
    to_canonical,
)
from .slides import (  # noqa: F401
    TiffLevel,
    open_level,
    read_level,
)
from .stacks import (  # noqa: F401
    AXES_ANNOTATION_KEY,
    IMAGE_SUFFIXES,
    MEASURED_PLANES_KEY,
    NIFTI_EXTENSIONS,
    NUMPY_EXTENSIONS,
    PLAIN_2D_SUFFIXES,
    SUPPORTED_EXTENSIONS,
    TIFF_EXTENSIONS,
    Stack,
    check_measured_planes,
    copy_tiff,
    normalize_unit,
    read_image_2d,
    read_stack,
    write_stack,
    write_tiled_tiff,
)

__all__ = [
    "AXES_ANNOTATION_KEY",
    "IMAGE_SUFFIXES",
    "MEASURED_PLANES_KEY",
    "NIFTI_EXTENSIONS",
    "NUMPY_EXTENSIONS",
    "PLAIN_2D_SUFFIXES",
    "SUPPORTED_EXTENSIONS",
    "SUPPORTED_LETTERS",
    "Stack",
    "TIFF_EXTENSIONS",
    "TiffLevel",
    "canonical_shape",
    "check_measured_planes",
    "copy_tiff",
    "default_axes",
    "from_canonical",
    "normalize_unit",
    "open_level",
    "parse_axes",
    "read_image_2d",
    "read_level",
    "read_stack",
    "to_canonical",
    "write_stack",
    "write_tiled_tiff",
]
