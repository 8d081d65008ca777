"""2D images (TIFF/PNG/JPEG/BMP) as (C, H, W) float32 arrays: the one reader and its alpha rule.

Training folders, FID reference folders and napari all read their 2D images here, so a PNG's
alpha channel is dropped (and a TIFF's 4th channel kept) the same way everywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["read_image_2d", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
"""File name endings of 2D images (:func:`read_image_2d`; folders of training/reference images)."""
PLAIN_2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
"""2D image formats whose 2nd/4th channel is alpha (LA / RGBA), which :func:`read_image_2d` drops."""


def read_image_2d(path) -> np.ndarray:
    """Read one 2D image (TIFF/PNG/JPEG/BMP) as a (C, H, W) float32 array.

    The one 2D image reader of volsr (training folders, FID reference folders, napari).

    Rules
    -----
    * (H, W) -> (1, H, W). Size-1 axes are squeezed first.
    * Channels-last arrays with 2-4 channels and both sides > 4 px (RGB/RGBA PNGs, RGB
      TIFFs) are moved to the front.
    * Alpha: for PNG/JPEG/BMP files a 2-channel (LA) or 4-channel (RGBA) image loses its
      last channel (transparency, not signal) -> 1 or 3 channels. TIFF channels are all
      kept (a 4-channel TIFF is usually 4 fluorescence channels, not RGBA).
    * A (C, H, W) TIFF with ``C <= 8 < min(H, W)`` is kept as is; other 3D shapes and
      anything with more dimensions are refused (read stacks with :func:`read_stack`).

    Raises
    ------
    InputError
        Unreadable file, or a shape that is not a 2D image.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(str(path))
        else:
            import skimage.io

            arr = skimage.io.imread(str(path))
    except Exception as err:  # unreadable image: name the file and the fix
        raise InputError(f"cannot read image {path}: {err}; is it a valid TIFF/PNG/JPEG file?") from None
    arr = np.squeeze(np.asarray(arr))
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3:
        if arr.shape[-1] <= 4 and min(arr.shape[:2]) > 4:
            arr = np.moveaxis(arr, -1, 0)
            if suffix in PLAIN_2D_SUFFIXES and arr.shape[0] in (2, 4):
                arr = arr[:-1]  # drop alpha (LA / RGBA)
        elif not (arr.shape[0] <= 8 < min(arr.shape[1:])):
            raise InputError(
                f"{path} has shape {arr.shape}, which is not a 2D image (H, W), (H, W, C) or (C, H, W); "
                "pass volumes as stack files, not as 2D images"
            )
    else:
        raise InputError(f"{path} has shape {arr.shape}; expected a 2D image (stacks go in stack files)")
    if np.iscomplexobj(arr) or arr.dtype == bool:
        arr = arr.astype(np.float32)
    return arr.astype(np.float32, copy=False)
