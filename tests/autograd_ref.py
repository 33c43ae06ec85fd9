"""Minimal reverse-mode automatic differentiation over NumPy float64 arrays.

Test-only helper. It exists so that hadamnp's hand-written BPTT gradients (and the golden
files built from them) can be cross-checked against gradients obtained *without* any
hand-derived backward pass for the model: every primitive below has a small, locally checked
vector-Jacobian product, and the chain rule is applied mechanically by :meth:`Tensor.backward`.
Nothing here imports hadamnp.

A :class:`Tensor` holds a float64 ``value``, the tensors it was computed from (its parents) and
a closure mapping the upstream gradient to one gradient per parent. ``backward`` orders the
graph reachable from the output topologically (this ordered list is the tape) and replays it
in reverse, accumulating gradients. Broadcasting in elementwise ops follows NumPy; the
backward sums the gradient back down to each operand's shape ("unbroadcast").

Primitives: ``add``, ``sub``, ``mul``, ``neg``, ``matmul``, ``transpose``, ``reshape``,
``relu``, ``sigmoid``, ``tanh``, ``sum``, ``mean``, ``getitem`` (basic and advanced indexing,
repeated indices accumulate), ``stack``, ``log_softmax``, ``ste`` (forward a given value,
backward identity).
``cross_entropy`` is composed from them.
"""

import numpy as np


def _unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``, undoing NumPy broadcasting.

    Parameters
    ----------
    grad : ndarray
        Gradient with the broadcast (output) shape.
    shape : tuple of int
        Shape of the operand that was broadcast.

    Returns
    -------
    ndarray
        Gradient with exactly ``shape``.
    """
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


class Tensor:
    """A node of the computation graph.

    Parameters
    ----------
    value : array_like
        Forward value; stored as a float64 ndarray (any shape, including 0-d).
    requires_grad : bool
        Whether gradients should flow to (and be stored on) this node.

    Attributes
    ----------
    value : ndarray, float64
        Forward value.
    grad : ndarray or None
        Gradient of the last :meth:`backward` output w.r.t. this node, same shape as
        ``value``; ``None`` until ``backward`` has reached the node.
    """

    __array_ufunc__ = None  # make ``ndarray <op> Tensor`` defer to Tensor's reflected operator

    def __init__(self, value, requires_grad=False, parents=(), vjp=None):
        self.value = np.asarray(value, dtype=np.float64)
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._parents = tuple(parents)
        self._vjp = vjp

    @property
    def shape(self):
        return self.value.shape

    @property
    def ndim(self):
        return self.value.ndim

    def __repr__(self):
        return f"Tensor(shape={self.shape}, requires_grad={self.requires_grad})"

    # Operator sugar; each maps to the module-level primitive of the same meaning.
    def __add__(self, other):
        return add(self, other)

    def __radd__(self, other):
        return add(other, self)

    def __sub__(self, other):
        return sub(self, other)

    def __rsub__(self, other):
        return sub(other, self)

    def __mul__(self, other):
        return mul(self, other)

    def __rmul__(self, other):
        return mul(other, self)

    def __neg__(self):
        return neg(self)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    def __getitem__(self, index):
        return getitem(self, index)

    @property
    def T(self):
        return transpose(self)

    def sum(self, axis=None, keepdims=False):
        return tsum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None):
        return mean(self, axis=axis)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], tuple):
            shape = shape[0]
        return reshape(self, shape)

    def tape(self):
        """Return the nodes reachable from ``self`` that need gradients, in topological order.

        Returns
        -------
        list of Tensor
            Parents before children; ``self`` is last.
        """
        order, seen = [], set()
        stack = [(self, False)]
        while stack:  # iterative DFS: long unrolls must not hit Python's recursion limit
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in seen or not node.requires_grad:
                continue
            seen.add(id(node))
            stack.append((node, True))
            for parent in node._parents:
                if parent.requires_grad and id(parent) not in seen:
                    stack.append((parent, False))
        return order

    def backward(self, grad=None):
        """Reverse-mode sweep: set ``.grad`` on every node of the tape.

        Parameters
        ----------
        grad : array_like, optional
            Upstream gradient, same shape as ``value``; defaults to 1 (``self`` must then be
            a scalar).
        """
        if grad is None:
            if self.value.size != 1:
                raise ValueError(
                    f"backward() without an upstream gradient needs a scalar output, "
                    f"got shape {self.shape}")
            grad = np.ones_like(self.value)
        grad = np.asarray(grad, dtype=np.float64)
        if grad.shape != self.shape:
            raise ValueError(f"upstream gradient has shape {grad.shape}, output has {self.shape}")
        tape = self.tape()
        for node in tape:
            node.grad = np.zeros_like(node.value)
        self.grad = grad.copy()
        for node in reversed(tape):
            if node._vjp is None:
                continue
            for parent, pgrad in zip(node._parents, node._vjp(node.grad)):
                if parent.requires_grad:
                    parent.grad = parent.grad + pgrad


def as_tensor(x):
    """Wrap an array as a constant (no-gradient) tensor; tensors pass through unchanged."""
    return x if isinstance(x, Tensor) else Tensor(x, requires_grad=False)


def _make(value, parents, vjp):
    """Create the result node of a primitive, tracking gradients only if a parent needs them."""
    needs = any(p.requires_grad for p in parents)
    return Tensor(value, requires_grad=needs, parents=parents if needs else (),
                  vjp=vjp if needs else None)


def add(a, b):
    """Elementwise ``a + b`` with NumPy broadcasting."""
    a, b = as_tensor(a), as_tensor(b)
    return _make(a.value + b.value, (a, b),
                 lambda g: (_unbroadcast(g, a.shape), _unbroadcast(g, b.shape)))


def sub(a, b):
    """Elementwise ``a - b`` with NumPy broadcasting."""
    a, b = as_tensor(a), as_tensor(b)
    return _make(a.value - b.value, (a, b),
                 lambda g: (_unbroadcast(g, a.shape), _unbroadcast(-g, b.shape)))


def mul(a, b):
    """Elementwise ``a * b`` with NumPy broadcasting."""
    a, b = as_tensor(a), as_tensor(b)
    return _make(a.value * b.value, (a, b),
                 lambda g: (_unbroadcast(g * b.value, a.shape),
                            _unbroadcast(g * a.value, b.shape)))


def neg(a):
    """Elementwise ``-a``."""
    a = as_tensor(a)
    return _make(-a.value, (a,), lambda g: (-g,))


def matmul(a, b):
    """``a @ b`` for operands with ndim >= 2 (leading batch dimensions broadcast).

    Parameters
    ----------
    a : Tensor, shape (..., p, q)
    b : Tensor, shape (..., q, r)

    Returns
    -------
    Tensor, shape (..., p, r)
    """
    a, b = as_tensor(a), as_tensor(b)
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul needs operands with ndim >= 2, got shapes {a.shape} and {b.shape}")

    def vjp(g):
        ga = g @ np.swapaxes(b.value, -1, -2)
        gb = np.swapaxes(a.value, -1, -2) @ g
        return _unbroadcast(ga, a.shape), _unbroadcast(gb, b.shape)

    return _make(a.value @ b.value, (a, b), vjp)


def transpose(a, axes=None):
    """Permute axes like ``np.transpose`` (default: reverse them)."""
    a = as_tensor(a)
    perm = tuple(reversed(range(a.ndim))) if axes is None else tuple(axes)
    inverse = tuple(np.argsort(perm))
    return _make(np.transpose(a.value, perm), (a,), lambda g: (np.transpose(g, inverse),))


def reshape(a, shape):
    """Reshape like ``np.reshape``."""
    a = as_tensor(a)
    return _make(a.value.reshape(shape), (a,), lambda g: (g.reshape(a.shape),))


def relu(a):
    """Elementwise ``max(a, 0)``; the derivative at exactly 0 is taken as 0."""
    a = as_tensor(a)
    mask = a.value > 0
    return _make(np.where(mask, a.value, 0.0), (a,), lambda g: (g * mask,))


def sigmoid(a):
    """Elementwise logistic ``1 / (1 + exp(-a))``; derivative ``s (1 - s)``."""
    a = as_tensor(a)
    # exp of a non-positive argument only: no overflow for large |a|
    e = np.exp(-np.abs(a.value))
    s = np.where(a.value >= 0, 1 / (1 + e), e / (1 + e))
    return _make(s, (a,), lambda g: (g * s * (1 - s),))


def tanh(a):
    """Elementwise ``tanh(a)``; derivative ``1 - tanh(a)^2``."""
    a = as_tensor(a)
    t = np.tanh(a.value)
    return _make(t, (a,), lambda g: (g * (1 - t * t),))


def _norm_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if np.isscalar(axis) else tuple(axis)
    return tuple(sorted(ax % ndim for ax in axes))


def tsum(a, axis=None, keepdims=False):
    """Sum over ``axis`` (all axes by default), like ``np.sum``."""
    a = as_tensor(a)
    axes = _norm_axes(axis, a.ndim)

    def vjp(g):
        if not keepdims:
            g = np.expand_dims(g, axes)
        return (np.broadcast_to(g, a.shape).copy(),)

    return _make(a.value.sum(axis=axes, keepdims=keepdims), (a,), vjp)


def mean(a, axis=None):
    """Mean over ``axis`` (all axes by default), composed as sum times 1/count."""
    a = as_tensor(a)
    axes = _norm_axes(axis, a.ndim)
    count = int(np.prod([a.shape[ax] for ax in axes]))
    return mul(tsum(a, axis=axes), 1.0 / count)


def getitem(a, index):
    """``a[index]`` for any NumPy index; the backward scatters with ``np.add.at`` so that
    repeated advanced indices accumulate."""
    a = as_tensor(a)

    def vjp(g):
        out = np.zeros_like(a.value)
        np.add.at(out, index, g)
        return (out,)

    return _make(a.value[index], (a,), vjp)


def stack(tensors, axis=0):
    """Stack same-shape tensors along a new ``axis``, like ``np.stack``."""
    tensors = tuple(as_tensor(t) for t in tensors)
    value = np.stack([t.value for t in tensors], axis=axis)
    new_axis = axis % value.ndim
    return _make(value, tensors,
                 lambda g: tuple(np.take(g, i, axis=new_axis) for i in range(len(tensors))))


def log_softmax(a, axis=-1):
    """Numerically stable ``a - logsumexp(a, axis)``."""
    a = as_tensor(a)
    z = a.value - a.value.max(axis=axis, keepdims=True)
    out = z - np.log(np.exp(z).sum(axis=axis, keepdims=True))
    probs = np.exp(out)
    return _make(out, (a,), lambda g: (g - probs * g.sum(axis=axis, keepdims=True),))


def cross_entropy(logits, targets):
    """Mean softmax cross-entropy over the rows of ``logits``.

    Parameters
    ----------
    logits : Tensor, shape (N, K)
    targets : ndarray of int, shape (N,)
        Class indices in ``[0, K)``.

    Returns
    -------
    Tensor, shape ()
    """
    logits = as_tensor(logits)
    targets = np.asarray(targets)
    if logits.ndim != 2 or targets.shape != (logits.shape[0],):
        raise ValueError(f"cross_entropy needs logits (N, K) and targets (N,), got "
                         f"{logits.shape} and {targets.shape}")
    if not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be integers, got dtype {targets.dtype}")
    if targets.size and (targets.min() < 0 or targets.max() >= logits.shape[1]):
        raise ValueError(f"targets must lie in [0, {logits.shape[1]}), got range "
                         f"[{targets.min()}, {targets.max()}]")
    picked = getitem(log_softmax(logits, axis=1), (np.arange(logits.shape[0]), targets))
    return neg(mean(picked))


def ste(a, forward_value):
    """Straight-through estimator: forward ``forward_value``, backward identity to ``a``.

    Parameters
    ----------
    a : Tensor
        The latent tensor gradients are passed to unchanged.
    forward_value : array_like
        The value used in the forward pass (e.g. ``sign(a)`` or a quantized ``a``); must have
        ``a``'s shape. It is treated as computed outside the graph (no gradient of its own).

    Returns
    -------
    Tensor
    """
    a = as_tensor(a)
    forward_value = np.asarray(forward_value, dtype=np.float64)
    if forward_value.shape != a.shape:
        raise ValueError(f"ste forward value has shape {forward_value.shape}, latent has {a.shape}")
    return _make(forward_value.copy(), (a,), lambda g: (g,))
