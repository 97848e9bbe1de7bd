"""Distributions against closed forms and SciPy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from a2c_jax.core.distributions import CATEGORICAL, DIAG_GAUSSIAN, distribution_for

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(5, 4)).astype(np.float32) * 2


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_categorical_log_prob_and_entropy():
    p = softmax(LOGITS.astype(np.float64))
    actions = np.array([0, 3, 1, 2, 3])
    np.testing.assert_allclose(
        CATEGORICAL.log_prob(LOGITS, jnp.asarray(actions)), np.log(p[np.arange(5), actions]), rtol=1e-5
    )
    np.testing.assert_allclose(CATEGORICAL.entropy(LOGITS), -(p * np.log(p)).sum(-1), rtol=1e-5)
    np.testing.assert_array_equal(CATEGORICAL.mode(LOGITS), LOGITS.argmax(-1))


def test_categorical_uniform_entropy_is_log_n():
    assert float(CATEGORICAL.entropy(jnp.zeros(6))) == pytest.approx(np.log(6), rel=1e-6)


def test_categorical_sample_frequencies():
    logits = jnp.asarray(LOGITS[0])
    draws = CATEGORICAL.sample(jax.random.PRNGKey(0), jnp.broadcast_to(logits, (200_000, 4)))
    freq = np.bincount(np.asarray(draws), minlength=4) / 200_000
    np.testing.assert_allclose(freq, softmax(LOGITS[0].astype(np.float64)), atol=5e-3)


def test_gaussian_log_prob_and_entropy_match_scipy():
    mean = RNG.normal(size=(7, 3)).astype(np.float32)
    log_std = np.array([-1.0, 0.0, 0.5], np.float32)
    action = RNG.normal(size=(7, 3)).astype(np.float32)
    expected = stats.norm.logpdf(action, mean, np.exp(log_std)).sum(-1)
    np.testing.assert_allclose(DIAG_GAUSSIAN.log_prob((mean, log_std), action), expected, rtol=1e-5)
    expected_h = stats.norm.entropy(0.0, np.exp(log_std)).sum() * np.ones(7)
    np.testing.assert_allclose(DIAG_GAUSSIAN.entropy((mean, log_std)), expected_h, rtol=1e-5)
    np.testing.assert_array_equal(DIAG_GAUSSIAN.mode((mean, log_std)), mean)


def test_gaussian_sample_moments():
    mean = jnp.array([1.0, -2.0])
    log_std = jnp.log(jnp.array([0.5, 2.0]))
    draws = DIAG_GAUSSIAN.sample(jax.random.PRNGKey(1), (jnp.broadcast_to(mean, (100_000, 2)), log_std))
    np.testing.assert_allclose(np.asarray(draws).mean(0), [1.0, -2.0], atol=0.03)
    np.testing.assert_allclose(np.asarray(draws).std(0), [0.5, 2.0], rtol=0.02)


def test_distribution_for_kind():
    assert distribution_for("discrete") is CATEGORICAL
    assert distribution_for("continuous") is DIAG_GAUSSIAN
