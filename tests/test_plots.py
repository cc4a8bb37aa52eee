"""Tests for nnref.plots: what each helper draws (lines, labels, scales, markers), that it
survives diverged runs, draws on a given Axes, saves a PNG, and leaks no figure."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from nnref import plots  # noqa: E402
from nnref.experiments import exploding_gradient_demo  # noqa: E402
from nnref.train import History  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def make_history(grad_norm, after=None, clipped=None, loss=None, transform="GlobalNorm(max_norm=2.0)",
                 params=("W1", "b1"), **per_epoch) -> History:
    """A History as fit would record it, with the given per-step norms.

    Per-parameter norms split each global norm evenly over the parameters, so that
    sqrt(sum of squares) gives the global norm back (the relation fit records)."""
    n = len(grad_norm)
    after = list(grad_norm) if after is None else list(after)
    h = History(
        loss=list(np.arange(n, 0, -1.0)) if loss is None else list(loss),
        grad_norm=list(grad_norm),
        grad_norm_after=after,
        clipped=[False] * n if clipped is None else list(clipped),
        transform=transform,
        **per_epoch,
    )
    share = np.sqrt(len(params))
    h.param_grad_norm = {p: [g / share for g in grad_norm] for p in params}
    h.param_grad_norm_after = {p: [g / share for g in after] for p in params}
    return h


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def line_labelled(ax, label):
    found = [ln for ln in ax.get_lines() if ln.get_label() == label]
    assert len(found) == 1, f"expected one line labelled {label!r}, got {[ln.get_label() for ln in ax.get_lines()]}"
    return found[0]


def assert_png(path) -> None:
    assert path.exists()
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_SIGNATURE


@pytest.fixture(scope="module")
def demo():
    # Two real runs: plain SGD diverges at step 12 (in epoch 2), the clipped run clips every step.
    return exploding_gradient_demo(epochs=2)


# ----------------------------------------------------------------------- plot_grad_norms


def test_grad_norms_lines_markers_threshold_and_labels(tmp_path):
    # Threshold 2: steps 3, 4, 5 (norms 4, 8, 3) exceed it and are scaled to 2.
    h = make_history([1.0, 2.0, 4.0, 8.0, 3.0], after=[1.0, 2.0, 2.0, 2.0, 2.0],
                     clipped=[False, False, True, True, True])
    ax = plots.plot_grad_norms(h, threshold=2.0)
    assert len(ax.get_lines()) == 4
    assert legend_texts(ax) == ["before clipping", "after clipping", "clipped (3 steps)", "threshold = 2"]
    before = line_labelled(ax, "before clipping")
    np.testing.assert_array_equal(before.get_xdata(), [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(before.get_ydata(), [1, 2, 4, 8, 3])
    np.testing.assert_array_equal(line_labelled(ax, "after clipping").get_ydata(), [1, 2, 2, 2, 2])
    markers = line_labelled(ax, "clipped (3 steps)")
    np.testing.assert_array_equal(markers.get_xdata(), [3, 4, 5])
    np.testing.assert_array_equal(markers.get_ydata(), [4, 8, 3])
    assert markers.get_linestyle() == "None" and markers.get_marker() == "o"
    np.testing.assert_array_equal(line_labelled(ax, "threshold = 2").get_ydata(), [2, 2])
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == "step"
    assert ax.get_ylabel() == "L2 norm of the gradient"
    assert ax.get_title().startswith("Gradient norm per step")
    assert "GlobalNorm(max_norm=2.0)" in ax.get_title()
    assert_png(plots.save_figure(ax, tmp_path / "norms.png"))


def test_grad_norms_without_transform_draws_one_line():
    h = make_history([3.0, 2.0, 1.0], transform=None)
    ax = plots.plot_grad_norms(h)
    assert [ln.get_label() for ln in ax.get_lines()] == ["global norm"]
    assert legend_texts(ax) == ["global norm"]


def test_grad_norms_per_param_adds_one_line_per_parameter():
    h = make_history([2.0, 4.0], params=("W1", "b1", "W2"), transform=None)
    ax = plots.plot_grad_norms(h, per_param=True)
    assert legend_texts(ax) == ["global norm", "||g_W1||", "||g_b1||", "||g_W2||"]
    # Each parameter got an equal share: g / sqrt(3).
    np.testing.assert_allclose(line_labelled(ax, "||g_W2||").get_ydata(), np.array([2.0, 4.0]) / np.sqrt(3))
    # Parameter lines never borrow a colour that means something else on this plot.
    roles = {plots.STYLE[k] for k in ("before", "after", "clipped", "diverged")}
    for name in ("W1", "b1", "W2"):
        assert matplotlib.colors.to_hex(line_labelled(ax, f"||g_{name}||").get_color()) not in roles


def test_grad_norms_linear_scale_on_request():
    ax = plots.plot_grad_norms(make_history([1.0, 2.0]), log_scale=False)
    assert ax.get_yscale() == "linear"


def test_grad_norms_marks_divergence_and_does_not_crash(tmp_path):
    # fit records the non-finite step, then stops: step 3 here.
    h = make_history([1.0, 10.0, np.inf], loss=[1.0, 50.0, np.nan], transform=None)
    h.diverged, h.message = True, "non-finite loss at epoch 1, step 3"
    ax = plots.plot_grad_norms(h)
    vline = line_labelled(ax, "diverged (step 3)")
    np.testing.assert_array_equal(vline.get_xdata(), [3, 3])
    y = line_labelled(ax, "global norm").get_ydata()
    np.testing.assert_array_equal(y[:2], [1.0, 10.0])
    assert np.isnan(y[2])  # inf is left out of the line, not drawn at the top of the axis
    assert ax.get_yscale() == "log"
    assert_png(plots.save_figure(ax, tmp_path / "diverged.png"))


def test_grad_norms_of_an_all_nonfinite_run_stays_linear(tmp_path):
    # Nothing positive and finite to put on a log axis: linear, no crash, divergence marked.
    h = make_history([np.nan], loss=[np.nan], transform=None)
    h.diverged = True
    ax = plots.plot_grad_norms(h)
    assert ax.get_yscale() == "linear"
    assert "diverged (step 1)" in legend_texts(ax)
    assert_png(plots.save_figure(ax, tmp_path / "nan.png"))


def test_grad_norms_of_real_runs(demo, tmp_path):
    ax = plots.plot_grad_norms(demo.clipped, threshold=demo.max_norm)
    assert f"clipped ({demo.clipped.n_clipped} steps)" in legend_texts(ax)
    assert len(line_labelled(ax, f"clipped ({demo.clipped.n_clipped} steps)").get_xdata()) == demo.clipped.n_clipped
    np.testing.assert_array_equal(line_labelled(ax, "threshold = 1").get_ydata(), [1.0, 1.0])
    ax2 = plots.plot_grad_norms(demo.unclipped, per_param=True)
    stop = demo.unclipped.n_steps  # fit stops at the step that went non-finite
    assert f"diverged (step {stop})" in legend_texts(ax2)
    assert_png(plots.save_figure(ax2, tmp_path / "plain.png"))


@settings(max_examples=25)
@given(
    norms=st.lists(st.one_of(st.floats(1e-3, 1e6), st.just(np.inf), st.just(np.nan)), min_size=1, max_size=30),
    flags=st.lists(st.booleans(), min_size=30, max_size=30),
)
def test_grad_norms_draws_what_the_history_holds(norms, flags):
    # Law: the "before" line is the recorded norm wherever it is finite and a gap
    # elsewhere; there is one marker per clipped step; a non-finite step is marked at the
    # first one.
    clipped = flags[: len(norms)]
    h = make_history(norms, clipped=clipped)
    try:
        ax = plots.plot_grad_norms(h)
        y = np.asarray(line_labelled(ax, "before clipping").get_ydata(), dtype=float)
        v = np.asarray(norms)
        finite = np.isfinite(v)
        np.testing.assert_array_equal(y[finite], v[finite])
        assert np.all(np.isnan(y[~finite]))
        k = sum(clipped)
        if k:
            assert len(line_labelled(ax, f"clipped ({k} steps)").get_xdata()) == k
        else:
            assert not any(t.startswith("clipped") for t in legend_texts(ax))
        if not finite.all():
            first = int(np.argmin(finite)) + 1
            assert f"diverged (step {first})" in legend_texts(ax)
    finally:
        plt.close("all")


def test_grad_norms_draws_on_the_given_axes_without_new_figures():
    fig, ax = plt.subplots()
    before = plt.get_fignums()
    out = plots.plot_grad_norms(make_history([1.0, 2.0]), ax=ax)
    assert out is ax
    assert plt.get_fignums() == before
    assert len(ax.get_lines()) == 2


def test_each_call_without_ax_makes_exactly_one_figure():
    h = make_history([1.0, 2.0], train_loss=[1.0], train_acc=[0.5])
    for draw in (lambda: plots.plot_grad_norms(h), lambda: plots.plot_training_curves(h),
                 lambda: plots.plot_loss_per_step({"run": h})):
        n = len(plt.get_fignums())
        draw()
        assert len(plt.get_fignums()) == n + 1


def test_grad_norms_bad_input():
    h = make_history([1.0, 2.0])
    with pytest.raises(TypeError, match="history"):
        plots.plot_grad_norms({"grad_norm": [1.0]})
    with pytest.raises(ValueError, match="threshold"):
        plots.plot_grad_norms(h, threshold=0.0)
    with pytest.raises(TypeError, match="threshold"):
        plots.plot_grad_norms(h, threshold="1")
    with pytest.raises(TypeError, match="ax"):
        plots.plot_grad_norms(h, ax="left")
    with pytest.raises(ValueError, match="history: expected a run with at least one"):
        plots.plot_grad_norms(History())
    broken = make_history([1.0, 2.0])
    broken.clipped = [True]
    with pytest.raises(ValueError, match=r"history: expected clipped to hold one entry per step \(2"):
        plots.plot_grad_norms(broken)


# ------------------------------------------------------------------ plot_training_curves


def classification_history(**kw) -> History:
    return make_history([1.0, 1.0, 1.0], train_loss=[2.0, 1.0, 0.5], train_acc=[0.5, 0.7, 0.9],
                        val_loss=[2.2, 1.3, 0.8], val_acc=[0.4, 0.6, 0.8], **kw)


def test_training_curves_two_panels_for_classification(tmp_path):
    axes = plots.plot_training_curves(classification_history())
    assert isinstance(axes, np.ndarray) and axes.shape == (2,)
    loss_ax, acc_ax = axes
    assert loss_ax.figure is acc_ax.figure
    assert legend_texts(loss_ax) == ["train", "validation"]
    assert legend_texts(acc_ax) == ["train", "validation"]
    np.testing.assert_array_equal(line_labelled(loss_ax, "train").get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(line_labelled(loss_ax, "validation").get_ydata(), [2.2, 1.3, 0.8])
    # Accuracy is drawn in percent.
    np.testing.assert_allclose(line_labelled(acc_ax, "train").get_ydata(), [50.0, 70.0, 90.0])
    # Classification (finite accuracy): fit's loss is cross-entropy, natural log, so nats.
    assert (loss_ax.get_xlabel(), loss_ax.get_ylabel()) == ("epoch", "cross-entropy loss (nats)")
    assert (acc_ax.get_xlabel(), acc_ax.get_ylabel()) == ("epoch", "accuracy (%)")
    assert loss_ax.get_yscale() == "linear"
    assert_png(plots.save_figure(axes, tmp_path / "curves.png"))


def test_training_curves_regression_draws_only_the_loss():
    h = make_history([1.0, 1.0], train_loss=[9.0, 4.0], train_acc=[np.nan, np.nan])
    axes = plots.plot_training_curves(h, log_loss=True)
    assert axes.shape == (1,)
    assert legend_texts(axes[0]) == ["train"]
    assert axes[0].get_yscale() == "log"
    assert len(axes[0].figure.axes) == 1
    # Accuracy all NaN: fit ran with loss="mse", whose unit is the target's, squared.
    assert axes[0].get_ylabel() == "MSE loss (squared target units)"


def test_training_curves_on_one_axes_uses_a_twin_for_accuracy():
    fig, ax = plt.subplots()
    axes = plots.plot_training_curves(classification_history(), ax=ax)
    assert axes.shape == (2,) and axes[0] is ax and axes[1] is not ax
    assert axes[1].figure is fig
    assert legend_texts(ax) == ["train loss", "validation loss", "train accuracy", "validation accuracy"]
    assert ax.get_ylabel() == "cross-entropy loss (nats)"
    assert axes[1].get_ylabel() == "accuracy (%)"
    assert len(plt.get_fignums()) == 1


def test_training_curves_into_given_panels():
    fig, given_axes = plt.subplots(1, 2)
    axes = plots.plot_training_curves(classification_history(), given_axes)  # ax, by position
    assert list(axes) == list(given_axes)
    assert len(given_axes[1].get_lines()) == 2
    assert len(plt.get_fignums()) == 1


def test_training_curves_accept_the_former_name_axes():
    # ``axes`` is the former name of ``ax``: the same drawing, keyword only.
    fig, given_axes = plt.subplots(1, 2)
    axes = plots.plot_training_curves(classification_history(), axes=given_axes)
    assert list(axes) == list(given_axes)
    assert legend_texts(given_axes[0]) == ["train", "validation"]
    _, one_ax = plt.subplots()
    twin = plots.plot_training_curves(classification_history(), axes=one_ax)
    assert twin.shape == (2,) and twin[0] is one_ax
    with pytest.raises(TypeError, match="ax, axes: expected the Axes as ax only"):
        plots.plot_training_curves(classification_history(), ax=one_ax, axes=given_axes)


def test_training_curves_loss_label_from_fit_loss_argument():
    # No finished epoch: nothing tells the loss, so the label is plain unless fit's loss is given.
    h = make_history([1.0, np.inf], loss=[1.0, np.nan], diverged=True)
    assert plots.plot_training_curves(h)[0].get_ylabel() == "loss"
    assert plots.plot_training_curves(h, loss="cross_entropy")[0].get_ylabel() == "cross-entropy loss (nats)"
    assert plots.plot_training_curves(h, loss="mse")[0].get_ylabel() == "MSE loss (squared target units)"
    # A given loss that agrees with the record changes nothing.
    ax = plots.plot_training_curves(classification_history(), loss="cross_entropy")[0]
    assert ax.get_ylabel() == "cross-entropy loss (nats)"


def test_training_curves_mark_a_divergence_mid_epoch():
    # Two finished epochs, then a non-finite step in epoch 3: the line goes at epoch 3.
    h = make_history([1.0, np.inf], loss=[1.0, np.nan], train_loss=[2.0, 1.0],
                     train_acc=[np.nan, np.nan], diverged=True)
    ax = plots.plot_training_curves(h)[0]
    np.testing.assert_array_equal(line_labelled(ax, "diverged (epoch 3)").get_xdata(), [3, 3])


def test_training_curves_of_a_real_diverged_run(demo, tmp_path):
    # fit's message says in which epoch the run died ("... at epoch 2, step 12 ...").
    epoch = int(re.search(r"at epoch (\d+)", demo.unclipped.message).group(1))
    axes = plots.plot_training_curves(demo.unclipped)
    assert axes.shape == (1,)  # regression: no accuracy panel
    assert f"diverged (epoch {epoch})" in legend_texts(axes[0])
    assert_png(plots.save_figure(axes[0], tmp_path / "died.png"))


def test_training_curves_bad_input():
    h = classification_history()
    _, one_ax = plt.subplots()
    with pytest.raises(TypeError, match="ax: expected None, one matplotlib Axes or a sequence of 2"):
        plots.plot_training_curves(h, ax=[one_ax])
    with pytest.raises(TypeError, match="ax: expected None"):
        plots.plot_training_curves(h, "both")
    # The former name is named back in its errors.
    with pytest.raises(TypeError, match="axes: expected None, one matplotlib Axes or a sequence of 2"):
        plots.plot_training_curves(h, axes=[one_ax])
    with pytest.raises(ValueError, match="loss: expected None, 'cross_entropy' or 'mse'"):
        plots.plot_training_curves(h, loss="hinge")
    # Finite accuracy means cross-entropy: "mse" would put the wrong unit on the axis.
    with pytest.raises(ValueError, match="loss: .* got 'mse', but its accuracy record says 'cross_entropy'"):
        plots.plot_training_curves(h, loss="mse")
    regression = make_history([1.0], train_loss=[2.0], train_acc=[np.nan])
    with pytest.raises(ValueError, match="loss: .* got 'cross_entropy', but its accuracy record says 'mse'"):
        plots.plot_training_curves(regression, loss="cross_entropy")
    with pytest.raises(TypeError, match="history"):
        plots.plot_training_curves([1.0, 2.0])


# -------------------------------------------------------------------- plot_loss_per_step


def test_loss_per_step_one_line_per_run_and_divergence(demo, tmp_path):
    runs = {"SGD": demo.unclipped, "SGD + clipping": demo.clipped}
    ax = plots.plot_loss_per_step(runs)
    stop = demo.unclipped.n_steps
    assert legend_texts(ax) == [f"SGD (diverged at step {stop})", "SGD + clipping"]
    # Two runs plus the diverged run's vertical line (kept out of the legend).
    assert len(ax.get_lines()) == 3
    np.testing.assert_array_equal(ax.get_lines()[1].get_xdata(), [stop, stop])
    clipped_line = line_labelled(ax, "SGD + clipping")
    np.testing.assert_array_equal(clipped_line.get_ydata(), demo.clipped.loss)
    assert ax.get_yscale() == "log"
    # Both runs are regressions (accuracy NaN): MSE, in squared target units.
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("step", "mini-batch MSE loss (squared target units)")
    assert_png(plots.save_figure(ax, tmp_path / "loss.png"))


def test_loss_per_step_colours_follow_the_style_cycle():
    runs = {f"run {i}": make_history([1.0, 2.0]) for i in range(3)}
    ax = plots.plot_loss_per_step(runs, log_scale=False)
    colours = [matplotlib.colors.to_hex(ln.get_color()) for ln in ax.get_lines()]
    assert colours == plots.STYLE["cycle"][:3]
    assert ax.get_yscale() == "linear"


def test_loss_per_step_loss_label():
    classification = make_history([1.0], train_loss=[1.0], train_acc=[0.5])
    regression = make_history([1.0], train_loss=[1.0], train_acc=[np.nan])
    unknown = make_history([np.inf], loss=[np.nan], diverged=True)  # died in epoch 1
    label = lambda runs, **kw: plots.plot_loss_per_step(runs, **kw).get_ylabel()  # noqa: E731
    assert label({"a": classification}) == "mini-batch cross-entropy loss (nats)"
    # A run with no finished epoch takes the others' loss.
    assert label({"a": classification, "b": unknown}) == "mini-batch cross-entropy loss (nats)"
    # Different losses share no unit; nothing known: the plain label.
    assert label({"a": classification, "b": regression}) == "mini-batch loss"
    assert label({"b": unknown}) == "mini-batch loss"
    assert label({"b": unknown}, loss="mse") == "mini-batch MSE loss (squared target units)"
    with pytest.raises(ValueError, match=r"loss: expected the loss histories\['a'\] was trained with"):
        plots.plot_loss_per_step({"a": classification}, loss="mse")


def test_loss_per_step_bad_input():
    with pytest.raises(TypeError, match="histories"):
        plots.plot_loss_per_step({})
    with pytest.raises(TypeError, match="histories"):
        plots.plot_loss_per_step([make_history([1.0])])
    with pytest.raises(TypeError, match=r"histories\['b'\]"):
        plots.plot_loss_per_step({"a": make_history([1.0]), "b": [1.0]})


# --------------------------------------------------------------------------- save_figure


def test_save_figure_accepts_figure_axes_and_axes_array(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    for i, target in enumerate((fig, ax, np.array([ax], dtype=object), [ax])):
        path = tmp_path / f"level{i}" / "deeper" / "fig.png"
        out = plots.save_figure(target, path)
        assert out == path
        assert_png(path)
    assert plt.fignum_exists(fig.number)  # nothing closed unless asked


def test_save_figure_closes_on_request(tmp_path):
    fig, ax = plt.subplots()
    plots.save_figure(fig, str(tmp_path / "closed.png"), dpi=50, close=True)
    assert not plt.fignum_exists(fig.number)
    assert_png(tmp_path / "closed.png")


def test_save_figure_bad_input(tmp_path):
    fig, _ = plt.subplots()
    with pytest.raises(TypeError, match="fig_or_ax"):
        plots.save_figure("figure", tmp_path / "x.png")
    with pytest.raises(TypeError, match="path"):
        plots.save_figure(fig, 3)
    with pytest.raises(ValueError, match="dpi"):
        plots.save_figure(fig, tmp_path / "x.png", dpi=0)
    assert not (tmp_path / "x.png").exists()


# ------------------------------------------------------------- refusals of every plot


@pytest.mark.parametrize("draw", [
    lambda h: plots.plot_grad_norms(h),
    lambda h: plots.plot_training_curves(h),
    lambda h: plots.plot_loss_per_step({"run": h}),
])
def test_every_training_plot_refuses_an_empty_history(draw):
    before = plt.get_fignums()
    with pytest.raises(ValueError, match=r"expected a run with at least one recorded step, got 0 steps"):
        draw(History())
    assert plt.get_fignums() == before, "refused before any figure was made"


def test_training_curves_refuse_per_epoch_records_that_do_not_line_up():
    h = classification_history()
    h.train_acc = h.train_acc[:2]
    with pytest.raises(ValueError, match=r"history: expected train_acc to hold one entry per epoch \(3"):
        plots.plot_training_curves(h)
    h = classification_history()
    h.val_acc = []
    with pytest.raises(ValueError, match="history: expected val_loss and val_acc of the same length, got 3 and 0"):
        plots.plot_training_curves(h)
    # Validation not measured at all is fine: only the training lines.
    h = make_history([1.0], train_loss=[1.0], train_acc=[0.5])
    assert legend_texts(plots.plot_training_curves(h)[0]) == ["train"]


def test_plot_flags_must_be_booleans():
    h = classification_history()
    with pytest.raises(TypeError, match="per_param: expected True or False, got str"):
        plots.plot_grad_norms(h, per_param="yes")
    with pytest.raises(TypeError, match="log_scale"):
        plots.plot_grad_norms(h, log_scale=None)
    with pytest.raises(TypeError, match="log_loss"):
        plots.plot_training_curves(h, log_loss="no")
    with pytest.raises(TypeError, match="log_scale"):
        plots.plot_loss_per_step({"a": h}, log_scale=0)
    fig, _ = plt.subplots()
    with pytest.raises(TypeError, match="close"):
        plots.save_figure(fig, "unused.png", close="yes")
