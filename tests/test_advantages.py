"""GAE against a plain NumPy loop written from the formula (Schulman et al. 2016), plus its limits."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from a2c_jax.core.advantages import gae

T, N, GAMMA = 24, 6, 0.97


def rollout_arrays(seed: int) -> tuple[np.ndarray, ...]:
    """Random rewards/values with terminated and truncated steps mixed in (never both at once)."""
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(T, N)).astype(np.float32)
    values = rng.normal(size=(T, N)).astype(np.float32)
    terminated = rng.random((T, N)) < 0.12
    truncated = (rng.random((T, N)) < 0.12) & ~terminated
    done = terminated | truncated
    # V(final obs) equals the next row's value unless the episode ended (then it is a fresh state)
    next_values = np.concatenate([values[1:], rng.normal(size=(1, N))]).astype(np.float32)
    next_values = np.where(done, rng.normal(size=(T, N)), next_values).astype(np.float32)
    assert terminated.any() and truncated.any()
    return rewards, values, next_values, terminated, truncated


def gae_reference(r, v, nv, term, trunc, gamma, lam):
    """Backward loop, one env at a time, straight from the GAE definition."""
    adv = np.zeros_like(r, dtype=np.float64)
    for n in range(r.shape[1]):
        running = 0.0
        for t in reversed(range(r.shape[0])):
            bootstrap = 0.0 if term[t, n] else nv[t, n]
            delta = r[t, n] + gamma * bootstrap - v[t, n]
            cont = 0.0 if (term[t, n] or trunc[t, n]) else 1.0
            running = delta + gamma * lam * cont * running
            adv[t, n] = running
    return adv, adv + v


def discounted_return_reference(r, nv, term, trunc, gamma):
    """Forward sums: G_t = sum_k gamma^k r_{t+k} up to the episode's end, plus the bootstrap there."""
    out = np.zeros_like(r, dtype=np.float64)
    for n in range(r.shape[1]):
        for t in range(r.shape[0]):
            total, k = 0.0, t
            while True:
                total += gamma ** (k - t) * r[k, n]
                if term[k, n]:
                    break
                if trunc[k, n] or k == r.shape[0] - 1:
                    total += gamma ** (k - t + 1) * nv[k, n]
                    break
                k += 1
            out[t, n] = total
    return out


FNS = {"eager": gae, "jit": jax.jit(gae)}


@pytest.mark.parametrize("variant", FNS)
@pytest.mark.parametrize("lam", [0.0, 0.95, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_gae_matches_numpy_loop(variant, lam, seed):
    r, v, nv, term, trunc = rollout_arrays(seed)
    adv, ret = FNS[variant](r, v, nv, term, trunc, GAMMA, lam)
    ref_adv, ref_ret = gae_reference(r, v, nv, term, trunc, GAMMA, lam)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, ref_ret, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", FNS)
def test_lambda_zero_is_one_step_td_error(variant):
    r, v, nv, term, trunc = rollout_arrays(2)
    adv, _ = FNS[variant](r, v, nv, term, trunc, GAMMA, 0.0)
    td = r + GAMMA * np.where(term, 0.0, nv) - v
    np.testing.assert_allclose(adv, td, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", FNS)
def test_lambda_one_is_discounted_return_minus_value(variant):
    r, v, nv, term, trunc = rollout_arrays(3)
    adv, ret = FNS[variant](r, v, nv, term, trunc, GAMMA, 1.0)
    mc = discounted_return_reference(r, nv, term, trunc, GAMMA)
    np.testing.assert_allclose(adv, mc - v, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ret, mc, rtol=1e-4, atol=1e-4)


def test_terminated_cuts_and_truncated_bootstraps():
    """One env, three steps; the second ends the episode either way."""
    r = np.array([[1.0], [1.0], [1.0]], np.float32)
    v = np.zeros((3, 1), np.float32)
    nv = np.array([[0.0], [10.0], [0.0]], np.float32)
    no = np.zeros((3, 1), bool)
    ended = np.array([[False], [True], [False]])
    adv_term, _ = gae(r, v, nv, ended, no, 0.5, 1.0)
    adv_trunc, _ = gae(r, v, nv, no, ended, 0.5, 1.0)
    np.testing.assert_allclose(np.asarray(adv_term)[:, 0], [1.5, 1.0, 1.0])  # no bootstrap at t=1
    np.testing.assert_allclose(np.asarray(adv_trunc)[:, 0], [4.0, 6.0, 1.0])  # 1 + 0.5 * 10 at t=1


def test_shape_mismatch_is_rejected():
    r, v, nv, term, trunc = rollout_arrays(0)
    with pytest.raises(AssertionError):
        gae(r, v[:-1], nv, term, trunc, GAMMA, 0.9)
