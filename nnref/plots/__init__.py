"""Figures: training runs (:mod:`.training`) and quantization (:mod:`.quant`).

Every helper draws one idea on matplotlib Axes and hands them back, so a notebook can add
to a figure or put several helpers side by side:

* each takes an optional ``ax`` (one Axes, or one per panel); when it is ``None`` a new
  figure is made;
* it returns the Axes it drew on (an array of them for several panels);
* it labels both axes with what and in which unit ("step", "L2 norm"), titles the Axes
  and adds a legend;
* it never calls ``plt.show()`` and never closes a figure: the caller decides (tests and
  scripts run under the ``Agg`` backend and call :func:`save_figure`);
* it refuses, with a ``TypeError`` or ``ValueError`` naming the argument, what it cannot
  draw faithfully: a wrong type, an empty history, inconsistent records.

Colours and sizes come from one module-level :data:`STYLE` dict (in :mod:`.common`, with
the other shared conventions), so every figure of the project looks the same.

Modules
-------
common
    ``STYLE``, ``save_figure``, ``figures_dir`` and the Axes helpers every plot uses.
training
    ``plot_grad_norms``, ``plot_training_curves``, ``plot_loss_per_step``.
quant
    ``plot_weight_histograms``, ``plot_quantization_error``, ``plot_channel_ranges``.
"""

from .common import STYLE, figures_dir, save_figure
from .quant import plot_channel_ranges, plot_quantization_error, plot_weight_histograms
from .training import plot_grad_norms, plot_loss_per_step, plot_training_curves

__all__ = [
    "STYLE",
    "figures_dir",
    "save_figure",
    "plot_grad_norms",
    "plot_training_curves",
    "plot_loss_per_step",
    "plot_weight_histograms",
    "plot_quantization_error",
    "plot_channel_ranges",
]
