"""volsr for napari: restore anisotropic z-stacks to isotropic sampling, train models, score results.

The widgets are registered through the npe2 manifest ``napari.yaml`` (Plugins > volsr) and are
thin shells over the :mod:`volsr` Python API: every computation happens in ``volsr``.
"""

from ._restore_widget import RestoreWidget
from ._sample_data import make_sample_data
from ._score_widget import ScoreWidget
from ._train_widget import TrainWidget
from ._writer import write_image

__all__ = ["RestoreWidget", "ScoreWidget", "TrainWidget", "make_sample_data", "write_image"]
