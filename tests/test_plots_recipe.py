"""The recipe's plot helpers: draw on the given Axes, return it, label what they show."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from nnref.mlp import MLP
from nnref.plots_recipe import (
    plot_binary_weights,
    plot_centroids,
    plot_loss_scale,
    plot_sensitivity,
    plot_sparsity_by_layer,
)
from nnref.prune import prune_masks
from nnref.quant.sensitivity import Sensitivity


def test_each_helper_draws_on_the_given_axes():
    fig, axes = plt.subplots(1, 5)
    sens = Sensitivity((2, 3), np.array([[1.0, 0.1], [0.5, 0.0]]), np.zeros((2, 2)), 0.2, 0.9)
    assert plot_sensitivity(sens, ax=axes[0]) is axes[0]
    assert len(axes[0].lines) == 2
    assert np.allclose(axes[0].lines[1].get_ydata(), [0.5 - 0.2, 1e-4])  # floor at 1e-4 on the log axis
    assert plot_loss_scale([8.0, 4.0, 4.0], [True, False, False], ax=axes[1]) is axes[1]
    assert "skipped step (1)" in [t.get_text() for t in axes[1].get_legend().get_texts()]
    model = MLP([6, 4, 3])
    masks = prune_masks(model, 0.5)
    assert plot_sparsity_by_layer({"per layer": masks}, ax=axes[2]) is axes[2]
    assert [round(p.get_height(), 6) for p in axes[2].patches] == [0.5, 0.5]
    assert plot_centroids(np.arange(10.0), [1.0, 5.0], ax=axes[3]) is axes[3]
    assert len(axes[3].lines) == 2
    assert plot_binary_weights(np.arange(10.0), 2.0, threshold=1.0, ax=axes[4]) is axes[4]
    assert len(axes[4].lines) == 4
    plt.close(fig)


def test_helpers_refuse_mismatched_input():
    with pytest.raises(ValueError, match="equal length"):
        plot_loss_scale([1.0, 2.0], [True])
    with pytest.raises(TypeError, match="Sensitivity"):
        plot_sensitivity(np.zeros(3))
    with pytest.raises(TypeError, match="masks_by_label"):
        plot_sparsity_by_layer({})
    plt.close("all")
