"""Losses (:mod:`hadamnp.models.losses`): values against direct formulas, gradients against
central differences (float64), validation, and stability with huge logits."""

import warnings

import numpy as np
import pytest
from scipy.special import expit, log_softmax

from hadamnp.errors import ConfigError, ShapeError
from hadamnp.models.losses import (LOSSES, accuracy, bce_with_logits, get_loss,
                                   mean_squared_error, softmax_cross_entropy)
from gradcheck import numeric_grad

FD_RTOL = 1e-7


def assert_grad_matches(analytic, numeric, what):
    err = float(np.max(np.abs(analytic - numeric)) / np.max(np.abs(numeric)))
    assert err <= FD_RTOL, (f"{what}: relative error {err:.2e}\n"
                            f"analytic {analytic}\nnumeric {numeric}")


@pytest.mark.parametrize("shape", [(1, 2), (4, 3), (3, 5, 2), (2, 3, 4)])
def test_cross_entropy_gradient_matches_finite_differences(shape):
    rng = np.random.default_rng(0)
    logits = 3 * rng.standard_normal(shape)
    y = rng.integers(0, shape[-1], size=shape[:-1])
    _, grad = softmax_cross_entropy(logits, y)
    numeric = numeric_grad(lambda: softmax_cross_entropy(logits, y)[0], logits)
    assert_grad_matches(grad, numeric, f"cross-entropy {shape}")


@pytest.mark.parametrize("shape", [(1,), (6,), (3, 4)])
def test_bce_gradient_matches_finite_differences(shape):
    rng = np.random.default_rng(1)
    logits = 3 * rng.standard_normal(shape + (1,))
    for y in (rng.integers(0, 2, size=shape), rng.random(shape)):  # labels and probabilities
        _, grad = bce_with_logits(logits, y)
        numeric = numeric_grad(lambda: bce_with_logits(logits, y)[0], logits)
        assert_grad_matches(grad, numeric, f"bce {shape}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_matches_the_direct_formula(dtype):
    rng = np.random.default_rng(2)
    logits = (2 * rng.standard_normal((3, 4, 5))).astype(dtype)
    y = rng.integers(0, 5, size=(3, 4))
    loss, grad = softmax_cross_entropy(logits, y)
    z = logits.astype(np.float64)
    logp = log_softmax(z, axis=-1)
    expected = -np.mean(np.take_along_axis(logp, y[..., None], axis=-1))
    onehot = np.eye(5)[y]
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    assert isinstance(loss, float)
    assert loss == pytest.approx(expected, rel=rtol)
    assert grad.dtype == dtype and grad.shape == logits.shape
    np.testing.assert_allclose(grad, (np.exp(logp) - onehot) / y.size, rtol=rtol, atol=rtol / 12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_matches_the_direct_formula(dtype):
    rng = np.random.default_rng(3)
    logits = (2 * rng.standard_normal((5, 3, 1))).astype(dtype)
    y = rng.integers(0, 2, size=(5, 3))
    loss, grad = bce_with_logits(logits, y)
    p = expit(logits[..., 0].astype(np.float64))
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    assert isinstance(loss, float)
    assert loss == pytest.approx(expected, rel=rtol)
    assert grad.dtype == dtype and grad.shape == logits.shape
    np.testing.assert_allclose(grad[..., 0], (p - y) / y.size, rtol=rtol, atol=rtol / 15)


def test_cross_entropy_accepts_strided_logits():
    """The model hands over many-to-many logits as a transposed view."""
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((4, 5, 3)).transpose(1, 0, 2)  # (5, 4, 3), not contiguous
    y = rng.integers(0, 3, size=(5, 4))
    loss, grad = softmax_cross_entropy(logits, y)
    loss_c, grad_c = softmax_cross_entropy(np.ascontiguousarray(logits), y)
    assert loss == loss_c
    np.testing.assert_array_equal(grad, grad_c)


def test_losses_do_not_write_into_their_arguments():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((3, 4))
    y = rng.integers(0, 4, 3)
    before = logits.copy()
    softmax_cross_entropy(logits, y)
    bce_with_logits(logits[:, :1], y % 2)
    np.testing.assert_array_equal(logits, before)


@pytest.mark.parametrize("logits_shape,y_shape", [((3, 4), (4,)), ((3, 4), (3, 1)),
                                                  ((2, 3, 4), (2,)), ((3, 4), ())])
def test_cross_entropy_shape_errors(logits_shape, y_shape):
    with pytest.raises(ShapeError, match="targets"):
        softmax_cross_entropy(np.zeros(logits_shape), np.zeros(y_shape, dtype=int))


@pytest.mark.parametrize("logits_shape,y_shape", [((3, 2), (3,)), ((3,), (3,)),
                                                  ((3, 1), (2,)), ((2, 3, 1), (3, 2))])
def test_bce_shape_errors(logits_shape, y_shape):
    with pytest.raises(ShapeError, match="logits"):
        bce_with_logits(np.zeros(logits_shape), np.zeros(y_shape))


@pytest.mark.parametrize("bad", [-1, 4, 100])
def test_cross_entropy_target_range(bad):
    y = np.array([0, 3, bad])
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        softmax_cross_entropy(np.zeros((3, 4)), y)


def test_bce_target_range():
    """Targets are labels or probabilities: anything outside [0, 1] is an error."""
    for bad in (-0.5, 2.0, np.nan):
        with pytest.raises(ValueError, match="target"):
            bce_with_logits(np.zeros((3, 1)), np.array([0.0, 1.0, bad]))


def test_cross_entropy_rejects_an_empty_batch():
    """A mean over zero positions is undefined: refuse it rather than return NaN."""
    with pytest.raises(ShapeError):
        softmax_cross_entropy(np.zeros((0, 3)), np.zeros(0, dtype=int))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_is_stable_with_huge_logits(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-3e4, 3e4, 3e4]], dtype=dtype)
    y = np.array([1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow on the way
        loss, grad = softmax_cross_entropy(logits, y)
    # log-sum-exp: row 0 loses 2e4; row 1 loses 6e4 + ln 2.
    assert loss == pytest.approx((2e4 + 6e4 + np.log(2)) / 2, rel=1e-6)
    np.testing.assert_allclose(grad, np.array([[1, -1, 0], [-1, 0.5, 0.5]]) / 2, atol=1e-7)
    loss, grad = softmax_cross_entropy(logits, np.array([0, 2]))
    assert loss == pytest.approx(np.log(2) / 2, rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_is_stable_with_huge_logits(dtype):
    logits = np.array([[1e4], [-1e4], [800.0], [-800.0]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. exp(800) overflows: must not be evaluated
        loss, grad = bce_with_logits(logits, np.array([0, 1, 1, 0]))
        loss_ok, grad_ok = bce_with_logits(logits, np.array([1, 0, 1, 0]))
    assert loss == pytest.approx((1e4 + 1e4) / 4, rel=1e-6)
    np.testing.assert_array_equal(grad[:, 0], np.array([1, -1, 0, 0]) / 4)
    assert loss_ok == 0.0
    np.testing.assert_array_equal(grad_ok, np.zeros_like(grad_ok))


def test_accuracy():
    logits = np.array([[0.1, 0.9, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1, 0, 0]])
    assert accuracy(logits, np.array([1, 0, 2, 2])) == 0.75
    assert accuracy(np.array([[1.0], [-1.0], [0.5]]), np.array([1, 1, 1])) == pytest.approx(2 / 3)


# ------------------------------------------------------------------------ mean squared error

@pytest.mark.parametrize("shape", [(1, 1), (5, 1), (3, 2), (2, 4, 1), (2, 3, 2)])
def test_mse_gradient_matches_finite_differences(shape):
    rng = np.random.default_rng(6)
    outputs = 2 * rng.standard_normal(shape)
    y = rng.standard_normal(shape)
    _, grad = mean_squared_error(outputs, y)
    numeric = numeric_grad(lambda: mean_squared_error(outputs, y)[0], outputs)
    assert_grad_matches(grad, numeric, f"mse {shape}")


def test_mse_hand_cases():
    # errors 1, -2, 0, 3 over four values: mean of 1, 4, 0, 9
    outputs = np.array([[1.0], [0.0], [2.0], [4.0]])
    y = np.array([[0.0], [2.0], [2.0], [1.0]])
    loss, grad = mean_squared_error(outputs, y)
    assert loss == 14 / 4
    np.testing.assert_array_equal(grad, 2 * np.array([[1.0], [-2.0], [0.0], [3.0]]) / 4)
    # the adding problem's baseline: predicting 1 for sums 0.5 and 1.5 costs 0.25
    loss, grad = mean_squared_error(np.ones((2, 1)), np.array([[0.5], [1.5]]))
    assert loss == 0.25
    np.testing.assert_array_equal(grad, np.array([[0.5], [-0.5]]))
    assert mean_squared_error(y, y) == (0.0, pytest.approx(np.zeros_like(y)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mse_keeps_the_dtype_and_its_arguments(dtype):
    rng = np.random.default_rng(7)
    outputs = rng.standard_normal((4, 3, 1)).astype(dtype).transpose(1, 0, 2)  # strided
    y = rng.standard_normal((3, 4, 1))
    before = outputs.copy()
    loss, grad = mean_squared_error(outputs, y)
    assert isinstance(loss, float) and grad.dtype == dtype and grad.shape == outputs.shape
    expected = np.mean((outputs.astype(np.float64) - y.astype(dtype)) ** 2)
    assert loss == pytest.approx(expected, rel=1e-6 if dtype == np.float32 else 1e-14)
    np.testing.assert_array_equal(outputs, before)


@pytest.mark.parametrize("outputs_shape,y_shape", [((3, 1), (3,)), ((3, 2), (3, 1)),
                                                   ((2, 3, 1), (2, 3)), ((3, 1), (1, 3))])
def test_mse_shape_errors(outputs_shape, y_shape):
    with pytest.raises(ShapeError, match="shape of the outputs"):
        mean_squared_error(np.zeros(outputs_shape), np.zeros(y_shape))


def test_mse_target_errors():
    with pytest.raises(ShapeError, match="no values"):
        mean_squared_error(np.zeros((0, 1)), np.zeros((0, 1)))
    with pytest.raises(ValueError, match="finite"):
        mean_squared_error(np.zeros((2, 1)), np.array([[0.0], [np.inf]]))
    with pytest.raises(TypeError, match="real numbers"):
        mean_squared_error(np.zeros((2, 1)), np.array([["a"], ["b"]]))


# ------------------------------------------------------------------------------ Loss objects

def test_loss_objects_name_their_targets_outputs_and_metric():
    rng = np.random.default_rng(8)
    logits = rng.standard_normal((4, 3))
    y = np.array([0, 2, 1, 2])
    ce = get_loss("cross_entropy")
    assert ce is LOSSES["cross_entropy"] and get_loss(ce) is ce
    assert (ce.targets, ce.metrics, ce.output_size(3)) == ("classes", ("accuracy",), 3)
    assert ce(logits, y)[0] == softmax_cross_entropy(logits, y)[0]
    assert ce.score(logits, y) == {"accuracy": accuracy(logits, y)}
    bce = get_loss("bce")
    assert (bce.targets, bce.metrics, bce.output_size(2)) == ("classes", ("accuracy",), 1)
    assert bce(logits[:, :1], y % 2)[0] == bce_with_logits(logits[:, :1], y % 2)[0]
    mse = get_loss("mse")
    assert (mse.targets, mse.metrics, mse.output_size(2)) == ("values", ("mse",), 2)
    values = rng.standard_normal((4, 3))
    assert mse.score(logits, values) == {"mse": mse(logits, values)[0]}


def test_loss_errors_name_the_problem():
    with pytest.raises(ConfigError, match="unknown loss 'hinge'.*cross_entropy, bce, mse"):
        get_loss("hinge")
    with pytest.raises(ConfigError, match="loss 'bce' needs binary labels.*task 'x' has 3"):
        get_loss("bce").output_size(3, "task 'x'")
