# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Manual backprop and gradient checking
#
# A neural network learns by following the gradient of its loss. In nnref every gradient
# is written by hand, layer by layer, from the chain rule, so every gradient can also be
# wrong. This tutorial derives the backward passes and then *checks* them against finite
# differences, the test that catches a wrong backward pass.
#
# **You will learn**
#
# - the forward pass of a Linear layer, $y = xW + b$, and its three backward formulas,
#   with their shapes;
# - how to check a gradient with the central difference, and why nnref checks in float64
#   with $h = 10^{-6}$ (truncation error against rounding error);
# - the derivatives of ReLU, tanh and sigmoid;
# - why the gradient of softmax cross-entropy is simply $(p - y)/B$;
# - how to check a whole MLP with `check_gradients`, and what a bug looks like there.
#
# **You need**: NumPy and first-year calculus (the chain rule). This is the first tutorial.
#
# **Figures written** (to `figures/`): `01_activations.png` (three activations and
# their derivatives) and `01_gradcheck_step_size.png` (error of the finite difference
# against the step $h$).

# %%
import matplotlib.pyplot as plt
import numpy as np

from nnref.gradcheck import check_gradients, numerical_gradient, rel_error
from nnref.layers import Linear, ReLU, Sigmoid, Tanh
from nnref.losses import softmax, softmax_cross_entropy
from nnref.mlp import MLP
from nnref.plots import figures_dir, save_figure

np.set_printoptions(precision=4, suppress=True)
rng = np.random.default_rng(0)  # every random number below comes from this seed

# %% [markdown]
# ## 1. The Linear layer, forward
#
# A batch of $B$ examples with $n_{in}$ features each is a matrix $x$ of shape
# $(B, n_{in})$. The layer has a weight matrix $W$ of shape $(n_{in}, n_{out})$ and a bias
# $b$ of shape $(n_{out},)$:
#
# $$y = xW + b, \qquad y_{ij} = \sum_k x_{ik} W_{kj} + b_j .$$
#
# $y$ has shape $(B, n_{out})$; the bias is added to every row (broadcasting). nnref stores
# $W$ as $(n_{in}, n_{out})$ so the code reads like the formula (PyTorch and TensorFlow
# Lite store the transpose).
#
# A worked example with one example ($B = 1$), two inputs and three outputs:
#
# $$x = \begin{pmatrix}1 & 2\end{pmatrix},\quad
#   W = \begin{pmatrix}1 & 0 & -1\\ 2 & 1 & 0\end{pmatrix},\quad
#   b = \begin{pmatrix}0.5 & 0 & 0\end{pmatrix}$$
#
# gives $y = (1\cdot1 + 2\cdot2 + 0.5,\; 1\cdot0 + 2\cdot1 + 0,\; 1\cdot(-1) + 2\cdot0 + 0)
# = (5.5,\; 2,\; -1)$.

# %%
layer = Linear(2, 3, dtype=np.float64)  # the initial weights are replaced just below
layer.W = np.array([[1.0, 0.0, -1.0],
                    [2.0, 1.0, 0.0]])
layer.b = np.array([0.5, 0.0, 0.0])
x_small = np.array([[1.0, 2.0]])
y_small = layer.forward(x_small)
print("y =", y_small)
np.testing.assert_array_equal(y_small, [[5.5, 2.0, -1.0]])

# %% [markdown]
# ## 2. The Linear layer, backward
#
# Backprop receives $g = \partial L/\partial y$, the gradient of the (scalar) loss with
# respect to the layer's output, shape $(B, n_{out})$, and must produce the gradients with
# respect to everything $y$ depends on. The chain rule sums over every output entry
# $y_{ij}$ that the variable influences:
#
# - $\dfrac{\partial L}{\partial W_{kj}} = \sum_i \dfrac{\partial L}{\partial y_{ij}}
#   \dfrac{\partial y_{ij}}{\partial W_{kj}} = \sum_i g_{ij}\, x_{ik}$, that is
#   $\;\dfrac{\partial L}{\partial W} = x^\top g$, shape $(n_{in}, n_{out})$;
# - $\dfrac{\partial L}{\partial b_j} = \sum_i g_{ij}$ (the bias is added to every row),
#   that is the column sums of $g$, shape $(n_{out},)$;
# - $\dfrac{\partial L}{\partial x_{ik}} = \sum_j g_{ij}\, W_{kj}$, that is
#   $\;\dfrac{\partial L}{\partial x} = g W^\top$, shape $(B, n_{in})$: this is what the
#   layer passes back to the layer before it.
#
# A quick sanity rule: **each gradient has the shape of the variable it belongs to**, and
# there is only one way to multiply $x$, $g$ and $W$ to get those shapes.
#
# With $g = (1,\; 0,\; 2)$ in the worked example:
# $\partial L/\partial W = x^\top g = \begin{pmatrix}1 & 0 & 2\\ 2 & 0 & 4\end{pmatrix}$,
# $\partial L/\partial b = (1,\; 0,\; 2)$ and
# $\partial L/\partial x = gW^\top = (1\cdot1 + 0\cdot0 + 2\cdot(-1),\; 1\cdot2 + 0\cdot1 + 2\cdot0)
# = (-1,\; 2)$.

# %%
g_small = np.array([[1.0, 0.0, 2.0]])
dx_small = layer.backward(g_small)
print("dL/dW =\n", layer.dW)
print("dL/db =", layer.db)
print("dL/dx =", dx_small)
np.testing.assert_array_equal(layer.dW, [[1.0, 0.0, 2.0], [2.0, 0.0, 4.0]])
np.testing.assert_array_equal(layer.db, [1.0, 0.0, 2.0])
np.testing.assert_array_equal(dx_small, [[-1.0, 2.0]])

# %% [markdown]
# Now a random batch, and the three formulas written out as explicit loops over the
# indices of the sums above, next to `nnref.layers.Linear`. Slow, but each line is one
# term of the chain rule.

# %%
B, n_in, n_out = 4, 3, 2
lin = Linear(n_in, n_out, seed=1, dtype=np.float64)
lin.b = rng.standard_normal(n_out)  # a nonzero bias, so the forward check covers it
x = rng.standard_normal((B, n_in))
g = rng.standard_normal((B, n_out))  # pretend this came from the layer above

y = lin.forward(x)
dx = lin.backward(g)
print("shapes: x", x.shape, " W", lin.W.shape, " b", lin.b.shape, " y", y.shape)
print("shapes: dW", lin.dW.shape, " db", lin.db.shape, " dx", dx.shape)

y_loop = np.zeros((B, n_out))
dW_loop = np.zeros((n_in, n_out))
db_loop = np.zeros(n_out)
dx_loop = np.zeros((B, n_in))
for i in range(B):
    for j in range(n_out):
        y_loop[i, j] = sum(x[i, k] * lin.W[k, j] for k in range(n_in)) + lin.b[j]
        db_loop[j] += g[i, j]
        for k in range(n_in):
            dW_loop[k, j] += g[i, j] * x[i, k]
            dx_loop[i, k] += g[i, j] * lin.W[k, j]

np.testing.assert_allclose(y, y_loop, rtol=1e-12)
np.testing.assert_allclose(lin.dW, dW_loop, rtol=1e-12)
np.testing.assert_allclose(lin.db, db_loop, rtol=1e-12)
np.testing.assert_allclose(dx, dx_loop, rtol=1e-12)
print("the loops agree with Linear.forward / Linear.backward")

# %% [markdown]
# ## 3. Checking a gradient with finite differences
#
# The loops check the code against the *formulas*; they cannot tell us whether the formulas
# are right. For that we go back to the definition of the derivative. The **central
# difference** perturbs one entry $\theta_i$ by $\pm h$:
#
# $$\frac{\partial f}{\partial \theta_i} \approx
#   \frac{f(\theta + h e_i) - f(\theta - h e_i)}{2h}.$$
#
# Two kinds of error compete:
#
# - **Truncation.** Taylor expansion gives
#   $f(\theta \pm h e_i) = f \pm h f' + \tfrac{h^2}{2} f'' \pm \tfrac{h^3}{6} f''' + \dots$;
#   in the difference the even terms cancel, leaving $f' + \tfrac{h^2}{6} f'''$: an error
#   $O(h^2)$ (the one-sided $(f(\theta + h e_i) - f(\theta))/h$ is only $O(h)$).
# - **Rounding.** Each $f$ is computed with a relative error of about the machine epsilon
#   $\varepsilon$ ($2.2\times10^{-16}$ in float64, $1.2\times10^{-7}$ in float32), and the
#   difference of two nearly equal numbers keeps that absolute error, which is then
#   divided by $2h$: an error about $\varepsilon |f| / h$.
#
# The sum $\tfrac{h^2}{6}|f'''| + \varepsilon|f|/h$ is smallest near
# $h \approx \varepsilon^{1/3}$: about $10^{-5}$ in float64, where both errors are near
# $10^{-10}$. That is the optimum; nnref checks in **float64 with $h = 10^{-6}$**, a
# conservative default a little to the left of it: there rounding already dominates, and
# the error is several times $10^{-10}$ (the next cell measures it), still far below the
# $10^{-2}$ of a wrong backward pass, while the truncation term, which grows with the
# curvature of $f$, stays negligible even for a more curved loss. In float32 the best
# achievable is around $10^{-5}$ relative error, and at $h = 10^{-6}$ the rounding term
# $\varepsilon/h \approx 0.1$ swamps everything: the check would measure rounding, not your
# backward pass.
#
# To turn the layer into a scalar function we use a trick: $L = \sum_{ij} G_{ij}\, y_{ij}$
# for a fixed random $G$ has $\partial L/\partial y = G$, so any $g$ can be tested. Here the
# layer is followed by a tanh, so there is some curvature for the truncation error to see:
# $L(W) = \sum_{ij} G_{ij} \tanh(xW + b)_{ij}$.
#
# `numerical_gradient(f, theta, h)` perturbs the float64 array `theta` **in place**, one
# entry at a time (and restores it), so `f` can simply read the layer's own weights.
# We compare with `rel_error(a, b)` $= \max_i |a_i - b_i| / \max(\max_i |a_i|, \max_i |b_i|)$.

# %%
x = rng.standard_normal((5, 3))
G = rng.standard_normal((5, 2))
lin = Linear(3, 2, seed=2, dtype=np.float64)
act = Tanh()


def layer_loss(W, dtype=np.float64):
    """L(W) = sum(G * tanh(x W + b)), evaluated in `dtype` (float64 unless told)."""
    z = x.astype(dtype) @ W.astype(dtype) + lin.b.astype(dtype)
    return float(np.sum(G.astype(dtype) * np.tanh(z)))


# Backprop: dL/d(tanh output) = G, then through Tanh, then through Linear.
act.forward(lin.forward(x))
lin.backward(act.backward(G))
dW_backprop = lin.dW.copy()

dW_numeric = numerical_gradient(layer_loss, lin.W, h=1e-6)
print("backprop dL/dW:\n", dW_backprop)
print("numerical dL/dW:\n", dW_numeric)
print(f"relative error: {rel_error(dW_backprop, dW_numeric):.2e}")
assert rel_error(dW_backprop, dW_numeric) < 1e-8

# %% [markdown]
# Now vary $h$ over twelve orders of magnitude, once with the loss computed in float64 and
# once in float32 (the same function with every array cast to float32 first; the
# perturbation itself is then rounded to float32 too). On a log-log plot the error is a
# **V**: on the right the truncation error falls like $h^2$ (slope 2), on the left the
# rounding error rises like $\varepsilon/h$ (slope $-1$). The guide lines have exactly
# those slopes: dashed, $c\,h^2$ through the float64 point at $h = 10^{-2}$; dotted,
# $\varepsilon/h$ for each precision.

# %%
hs = np.logspace(-12, 0, 37)
err64 = np.array([rel_error(dW_backprop, numerical_gradient(layer_loss, lin.W, h)) for h in hs])
err32 = np.array([
    rel_error(dW_backprop, numerical_gradient(lambda W: layer_loss(W, np.float32), lin.W, h))
    for h in hs
])
best64, best32 = hs[np.argmin(err64)], hs[np.argmin(err32)]
print(f"float64: smallest error {err64.min():.1e} at h = {best64:.0e}")
print(f"float32: smallest error {err32.min():.1e} at h = {best32:.0e}")
at_1e6 = np.argmin(np.abs(hs - 1e-6))
print(f"at h = 1e-6: float64 error {err64[at_1e6]:.1e}, float32 error {err32[at_1e6]:.1e}")

# %%
fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
ax.loglog(hs, err64, "o-", ms=3, label="loss in float64")
ax.loglog(hs, err32, "s-", ms=3, label="loss in float32")
c = err64[np.argmin(np.abs(hs - 1e-2))] / 1e-2**2  # truncation ~ c h^2 through h = 1e-2
guide = hs[hs >= 1e-5]
ax.loglog(guide, c * guide**2, "k--", lw=1, label=r"truncation $\propto h^2$")
for eps, name, at in ((np.finfo(np.float64).eps, "64", 1e-9), (np.finfo(np.float32).eps, "32", 1e-3)):
    left = hs[eps / hs < 2]
    ax.loglog(left, eps / left, ":", color="gray", lw=1.2)
    ax.annotate(rf"rounding $\varepsilon_{{{name}}}/h$", (at, eps / at), textcoords="offset points",
                xytext=(-4, -4), ha="right", va="top", color="gray", fontsize=9)
ax.axvline(1e-6, color="gray", lw=0.8, alpha=0.6)
ax.annotate("h = 1e-6\n(nnref default)", (1e-6, 3e-13), xytext=(4, 0), textcoords="offset points",
            fontsize=8, color="gray")
ax.set_ylim(1e-13, 3)
ax.set_xlabel("finite-difference step h (units of the weight)")
ax.set_ylabel("relative error of the gradient (dimensionless)")
ax.set_title("Central difference vs backprop: truncation (right) vs rounding (left)")
ax.grid(True, which="major", alpha=0.3)
ax.legend(loc="lower left")
save_figure(fig, figures_dir() / "01_gradcheck_step_size.png")
fig

# %% [markdown]
# Read the figure from right to left: shrinking $h$ helps (slope 2) until rounding takes
# over, then hurts (slope $-1$). Float32 bottoms out near $10^{-5}$ instead of $10^{-10}$, at a
# larger $h$, and at $h = 10^{-6}$ it is nearly useless; its plateau at 1 on the far left
# is where $h$ is below float32's resolution of the weights, so $\theta \pm h$ rounds back
# to $\theta$ and the "derivative" is 0.
#
# The rule of thumb that follows: **a relative error around $10^{-7}$ or below in float64
# means the backward pass is right; an error around $10^{-2}$ to $1$ means it is wrong.**
#
# ## 4. Activations and their derivatives
#
# Elementwise activations have elementwise derivatives, so their backward is
# $\partial L/\partial x = g \odot \sigma'(x)$:
#
# | activation | $\sigma(x)$ | $\sigma'(x)$ |
# |---|---|---|
# | ReLU | $\max(x, 0)$ | $[x > 0]$ (0 at the kink $x = 0$) |
# | tanh | $\tanh x$ | $1 - \tanh^2 x = 1 - y^2$ |
# | sigmoid | $1/(1 + e^{-x})$ | $\sigma(x)(1 - \sigma(x)) = y(1 - y)$ |
#
# tanh and sigmoid have derivatives written in terms of their *output* $y$, so their
# backward only needs what the forward cached. Calling `backward` with $g = 1$ returns
# $\sigma'(x)$ itself, which we plot.

# %%
xs = np.linspace(-4, 4, 401)
fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), layout="constrained", sharex=True)
for ax, cls, where in zip(axes, (ReLU, Tanh, Sigmoid), ("upper left", "lower right", "upper left")):
    a = cls()
    ys = a.forward(xs)
    dys = a.backward(np.ones_like(xs))  # g = 1 gives the derivative itself
    ax.plot(xs, ys, label=r"$\sigma(x)$")
    ax.plot(xs, dys, "--", label=r"$\sigma'(x)$ from backward")
    ax.set_title(cls.__name__)
    ax.set_xlabel("pre-activation x (dimensionless)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc=where)
axes[0].set_ylabel("value (dimensionless)")
save_figure(fig, figures_dir() / "01_activations.png")
fig

# %% [markdown]
# Check each backward against the formula in the table and against finite differences,
# with the same $L = \sum G \odot \sigma(x)$ trick. For ReLU the inputs are kept away from 0:
# a central difference that straddles the kink averages the two slopes and gives $1/2$,
# which is not a bug in the backward pass but a point where the derivative does not exist.

# %%
x_act = rng.standard_normal((4, 5))
x_act[np.abs(x_act) < 0.1] = 0.5  # stay clear of ReLU's kink (|x| >> h)
G_act = rng.standard_normal((4, 5))
formulas = {
    ReLU: lambda x: (x > 0).astype(float),
    Tanh: lambda x: 1 - np.tanh(x) ** 2,
    Sigmoid: lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2,  # sigma' written without sigma
}
for cls, derivative in formulas.items():
    a = cls()
    a.forward(x_act)
    dx_backprop = a.backward(G_act)
    x_var = x_act.copy()  # numerical_gradient perturbs this array in place
    dx_numeric = numerical_gradient(lambda v: np.sum(G_act * cls().forward(v)), x_var)
    np.testing.assert_allclose(dx_backprop, G_act * derivative(x_act), rtol=1e-12, atol=1e-15)
    err = rel_error(dx_backprop, dx_numeric)
    print(f"{cls.__name__:8s} backward vs finite differences: rel. error {err:.1e}")
    assert err < 1e-8

# %% [markdown]
# ## 5. Softmax cross-entropy and its gradient $(p - y)/B$
#
# The network's last layer outputs logits $z_i \in \mathbb{R}^C$ for each example $i$.
# Softmax turns them into probabilities, and cross-entropy is the negative log-probability
# of the true class $c_i$, averaged over the batch:
#
# $$p_{ij} = \frac{e^{z_{ij}}}{\sum_k e^{z_{ik}}}, \qquad
#   L = -\frac{1}{B}\sum_i \log p_{i c_i}
#     = \frac{1}{B}\sum_i \Big(-z_{i c_i} + \log \sum_k e^{z_{ik}}\Big).$$
#
# Differentiate one example's term $L_i$ with respect to $z_{ij}$: the first part gives
# $-[j = c_i]$, the log-sum-exp gives $e^{z_{ij}} / \sum_k e^{z_{ik}} = p_{ij}$. With the
# one-hot target $y_{ij} = [j = c_i]$:
#
# $$\frac{\partial L_i}{\partial z_{ij}} = p_{ij} - y_{ij}, \qquad
#   \frac{\partial L}{\partial z} = \frac{p - y}{B}.$$
#
# (Going through the softmax Jacobian $\operatorname{diag}(p) - pp^\top$ gives the same
# result; the log-sum-exp route is shorter.) Each row of the gradient sums to
# $\sum_j p_{ij} - 1 = 0$: pushing up one logit pushes the others down. The $1/B$ comes
# from the mean; forgetting it is a classic bug (section 7).
#
# Worked example, $B = 1$: $z = (0,\, 0,\, \ln 2)$ gives $e^z = (1, 1, 2)$,
# $p = (1/4,\, 1/4,\, 1/2)$. With true class 2: $L = -\ln(1/2) = \ln 2 \approx 0.6931$ and
# $\partial L / \partial z = p - y = (1/4,\; 1/4,\; -1/2)$.

# %%
z = np.array([[0.0, 0.0, np.log(2.0)]])
loss, dz = softmax_cross_entropy(z, np.array([2]))
print("p =", softmax(z), " loss =", round(loss, 4), " dL/dz =", dz)
np.testing.assert_allclose(softmax(z), [[0.25, 0.25, 0.5]], rtol=1e-15)
np.testing.assert_allclose(loss, np.log(2.0), rtol=1e-15)
np.testing.assert_allclose(dz, [[0.25, 0.25, -0.5]], rtol=1e-15)

# %% [markdown]
# And on a random batch: the library's gradient against $(p - y)/B$ built by hand and
# against finite differences.

# %%
B, C = 6, 4
z = 3 * rng.standard_normal((B, C))
labels = rng.integers(0, C, size=B)
loss, dz = softmax_cross_entropy(z, labels)

y_onehot = np.eye(C)[labels]
dz_formula = (softmax(z) - y_onehot) / B
dz_numeric = numerical_gradient(lambda v: softmax_cross_entropy(v, labels)[0], z.copy())
print(f"loss = {loss:.4f}")
print("row sums of dL/dz:", dz.sum(axis=1))
print(f"rel. error vs (p - y)/B: {rel_error(dz, dz_formula):.1e}, vs finite differences: "
      f"{rel_error(dz, dz_numeric):.1e}")
np.testing.assert_allclose(dz, dz_formula, rtol=1e-12, atol=1e-15)
np.testing.assert_allclose(dz.sum(axis=1), 0.0, atol=1e-15)
assert rel_error(dz, dz_numeric) < 1e-8

# %% [markdown]
# ## 6. The whole MLP
#
# `MLP([8, 16, 16, 4])` is Linear(8→16) → ReLU → Linear(16→16) → ReLU → Linear(16→4): the
# last layer outputs logits. Its parameters and gradients are dicts of plain arrays keyed
# `W1, b1, W2, b2, W3, b3`. `loss_and_grads(x, labels)` runs the forward pass, the loss,
# then `backward`, which walks the layers in reverse; each layer uses only what its own
# forward cached:
#
# $$\frac{\partial L}{\partial z_L} = \frac{p - y}{B} \;\to\;
#   \text{Linear}_3 \;\to\; \text{ReLU} \;\to\; \text{Linear}_2 \;\to\; \text{ReLU}
#   \;\to\; \text{Linear}_1.$$

# %%
model = MLP([8, 16, 16, 4], activation="relu", seed=0)
x = rng.standard_normal((6, 8))
labels = rng.integers(0, 4, size=6)
print(model)
loss, grads = model.loss_and_grads(x, labels)
print(f"loss = {loss:.4f} (a uniform guess over 4 classes would score ln 4 = {np.log(4):.4f})")
for name, p in model.params.items():
    print(f"  {name}: param {str(p.shape):9s} grad {str(grads[name].shape):9s} dtype {p.dtype}")

# %% [markdown]
# `check_gradients(model, x, labels)` does section 3 for every parameter: it works on a
# float64 copy of the model (this one is float32), compares backprop with
# `numerical_gradient` at $h = 10^{-6}$ and reports the worst relative error per parameter.
# It costs two forward passes per parameter entry, so use a small model and batch.

# %%
errors = check_gradients(model, x, labels)
for name, err in errors.items():
    print(f"  {name}: worst relative error {err:.1e}")
assert max(errors.values()) < 1e-7

# %% [markdown]
# ## 7. What a bug looks like
#
# A gradient check is only useful if it fails loudly on a wrong backward pass. Two classic
# bugs, each planted in a copy of the model by swapping one layer:
#
# 1. the first Linear layer computes $\partial L/\partial b$ as the batch **mean** of $g$
#    instead of the sum (so it is $B$ times too small);
# 2. the first ReLU **forgets its mask** and passes $g$ through unchanged, as if it were
#    the identity.

# %%
class MeanBiasLinear(Linear):
    """BUG: db = mean of g over the batch instead of the sum."""

    def backward(self, grad_out, input_grad=True):
        dx = super().backward(grad_out, input_grad)
        self.db = grad_out.mean(axis=0)
        return dx


class MasklessReLU(ReLU):
    """BUG: the backward forgets the mask [x > 0]."""

    def backward(self, grad_out):
        return grad_out


bug1 = model.copy()
first = MeanBiasLinear(8, 16)
first.W, first.b = bug1.layers[0].W, bug1.layers[0].b
bug1.layers[0] = first

bug2 = model.copy()
bug2.layers[1] = MasklessReLU()

for title, m in (("correct", model), ("bug 1: mean bias", bug1), ("bug 2: maskless ReLU", bug2)):
    errs = check_gradients(m, x, labels)
    print(f"{title:22s}" + "  ".join(f"{k} {v:.0e}" for k, v in errs.items()))

assert check_gradients(bug1, x, labels)["b1"] > 0.5
assert check_gradients(bug2, x, labels)["W1"] > 1e-2

# %% [markdown]
# The report does more than say "wrong": it says **where**. Bug 1 shows up in `b1` only,
# with an error of $1 - 1/B \approx 0.83$ (the gradient is $1/6$ of what it should be), and
# every other parameter is still exact. Bug 2 breaks `W1` and `b1`, the parameters
# *below* the broken ReLU, whose gradients flow through it, while `W2, b2, W3, b3`, above
# it, stay near $10^{-9}$ (finite-difference rounding, as in section 3). Reading the errors
# layer by layer localises the broken backward.

# %% [markdown]
# ## Graded exercises: write the backward passes and the loss gradient of this tutorial
#
# Each function below is nnref's own. Get your version of this tutorial, with each of
# them replaced by its signature, its docstring and `raise NotImplementedError`, with
#
# ```bash
# python -m nnref exercises --out my_exercises     # .py and .ipynb for every tutorial
# python -m nnref check my_exercises               # one row per exercise
# ```
#
# Then write the bodies. `python -m nnref check` runs nnref's laws on each function
# (`nnref.laws`: hypothesis searches for inputs where a law fails and shows the smallest
# one, with the expected and the received values) and reports passed, failed or not
# attempted. The cell after the exercises runs the same checks here.
#
# - `linear_backward`: section 2: `dx`, `dW`, `db` of $y = xW + b$
# - `relu_backward`: section 4: the gradient passes where $x > 0$ (and not at $x = 0$)
# - `leaky_relu_forward`: section 4: $y = x$ for $x > 0$, else $\alpha x$, for every $\alpha
#   \ge 0$, also $\alpha > 1$
# - `leaky_relu_backward`: section 4: slope 1 or $\alpha$
# - `tanh_backward`: section 4: in terms of the output $y$
# - `sigmoid_backward`: section 4: in terms of the output $y$
# - `cross_entropy_loss_and_grad`: section 5: the mean loss and $(p - y)/B$, stable for
#   large logits

# %%
from nnref import laws

# %% tags=["exercise"]
linear_backward = laws.reference("linear_backward")

# %% tags=["exercise"]
relu_backward = laws.reference("relu_backward")

# %% tags=["exercise"]
leaky_relu_forward = laws.reference("leaky_relu_forward")

# %% tags=["exercise"]
leaky_relu_backward = laws.reference("leaky_relu_backward")

# %% tags=["exercise"]
tanh_backward = laws.reference("tanh_backward")

# %% tags=["exercise"]
sigmoid_backward = laws.reference("sigmoid_backward")

# %% tags=["exercise"]
cross_entropy_loss_and_grad = laws.reference("cross_entropy_loss_and_grad")

# %%
for exercise in (linear_backward,
                 relu_backward,
                 leaky_relu_forward,
                 leaky_relu_backward,
                 tanh_backward,
                 sigmoid_backward,
                 cross_entropy_loss_and_grad):
    report = laws.check(exercise.__name__, exercise, max_examples=15)
    print(report if not report.passed else f"{exercise.__name__}: passed ({len(report.results)} laws)")

# %% [markdown]
# ## Summary
#
# - A Linear layer $y = xW + b$ has backward $\partial L/\partial W = x^\top g$,
#   $\partial L/\partial b = \sum_{\text{batch}} g$, $\partial L/\partial x = gW^\top$; each
#   gradient has the shape of its variable.
# - ReLU, tanh and sigmoid multiply $g$ by $[x > 0]$, $1 - y^2$ and $y(1 - y)$.
# - Softmax cross-entropy's gradient is $(p - y)/B$: log-sum-exp differentiates to $p$.
# - The central difference has truncation error $O(h^2)$ and rounding error
#   $O(\varepsilon/h)$: the optimum is $h \approx \varepsilon^{1/3} \approx 10^{-5}$ in float64,
#   where both are near $10^{-10}$; nnref's default $h = 10^{-6}$ is a conservative choice
#   whose error (rounding-dominated, a few times $10^{-10}$) is still far below a bug's; in
#   float32 even the best $h$ leaves errors near $10^{-5}$.
# - `check_gradients` reports the worst relative error per parameter: below $10^{-7}$ is
#   right, a wrong backward gives $10^{-2}$ to $1$, and the parameters it hits point to
#   the broken layer.
#
# ## Exercises
#
# 1. Plant a third bug: a subclass of `Linear` whose `backward` returns
#    `grad_out @ self.W.T * 0.5` as $\partial L/\partial x$; swap it in for the second
#    Linear layer (`layers[2]`, copying its `W` and `b`). Which parameters does
#    `check_gradients` flag, and why not that layer's own `W2` and `b2`?
# 2. Redo the step-size figure with the one-sided difference
#    $(f(\theta + h e_i) - f(\theta))/h$ (write it as a loop of a few lines). Measure the
#    slope of the right branch and the best $h$ in float64; compare with $\varepsilon^{1/2}$.
# 3. Run `check_gradients` on `MLP([8, 16, 16, 4], activation="relu")` with inputs
#    scaled by $10^{-7}$ (so some pre-activations sit within $h$ of the kink). What happens
#    to the errors, and why is that not a bug?
