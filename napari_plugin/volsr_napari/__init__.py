"""volsr for napari: restore anisotropic z-stacks to isotropic sampling, upscale images, train models, score.

The widgets are registered through the npe2 manifest ``napari.yaml`` (Plugins > volsr) and are
thin shells over the :mod:`volsr` Python API: every computation happens in ``volsr``.
"""

from ._restore_widget import RestoreWidget
from ._sample_data import make_sample_data
from ._score_widget import ScoreWidget
from ._train_widget import TrainWidget
from ._upscale_widget import UpscaleWidget
from ._writer import write_image

__all__ = ["RestoreWidget", "ScoreWidget", "TrainWidget", "UpscaleWidget", "make_sample_data", "write_image"]
