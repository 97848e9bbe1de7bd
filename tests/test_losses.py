"""The A2C loss against a NumPy reference, and what one gradient step does to the policy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from a2c_jax.config import HParams
from a2c_jax.core.distributions import CATEGORICAL
from a2c_jax.core.losses import Batch, a2c_loss
from a2c_jax.core.networks import Policy, feedforward_policy

T, N, OBS, A = 4, 8, 3, 4
B = T * N


def linear_actor(params, obs):
    return obs @ params["w"]


def linear_policy() -> Policy:
    """logits = obs @ w, value = obs @ v: small enough to differentiate by hand."""
    return feedforward_policy(lambda key: None, linear_actor, lambda params, obs: obs @ params["v"], CATEGORICAL)


def flat(x):
    return np.asarray(x).reshape(B, *np.shape(x)[2:])


def make_inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    params = {"w": rng.normal(size=(OBS, A)).astype(np.float32), "v": rng.normal(size=(OBS,)).astype(np.float32)}
    batch = Batch(
        obs=rng.normal(size=(T, N, OBS)).astype(np.float32),
        action=rng.integers(0, A, size=(T, N)).astype(np.int32),
        advantage=rng.normal(size=(T, N)).astype(np.float32),
        target_return=rng.normal(size=(T, N)).astype(np.float32),
        done=np.zeros((T, N), bool),
    )
    return params, batch


def numpy_loss(params, batch, vf_coef, ent_coef, normalize=False):
    """The loss over the B = T * N samples, written out in float64 from the formula."""
    obs, action, target = flat(batch.obs).astype(np.float64), flat(batch.action), flat(batch.target_return)
    logits = obs @ params["w"]
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    p = np.exp(logp)
    adv = flat(batch.advantage).astype(np.float64)
    if normalize:
        adv = (adv - adv.mean()) / (adv.std(ddof=1) + 1e-8)  # PyTorch's Tensor.std() (SB3): n - 1
    pg = -(adv * logp[np.arange(B), action]).mean()
    values = obs @ params["v"]
    vf = ((target - values) ** 2).mean()
    ent = -(p * logp).sum(-1).mean()
    grad_w_pg = -(obs.T @ ((np.eye(A)[action] - p) * adv[:, None])) / B
    return pg + vf_coef * vf - ent_coef * ent, pg, vf, ent, grad_w_pg


LOSS_FNS = {"eager": a2c_loss, "jit": jax.jit(a2c_loss, static_argnums=(1, 4))}


@pytest.mark.parametrize("variant", LOSS_FNS)
@pytest.mark.parametrize("normalize", [False, True])
def test_loss_matches_numpy(variant, normalize):
    params, batch = make_inputs()
    hp = HParams(vf_coef=0.5, ent_coef=0.01).as_arrays()
    loss, m = LOSS_FNS[variant](params, linear_policy(), batch, hp, normalize)
    ref, pg, vf, ent, _ = numpy_loss(params, batch, 0.5, 0.01, normalize)
    assert float(loss) == pytest.approx(ref, rel=1e-5)
    assert float(m.policy_loss) == pytest.approx(pg, rel=1e-5, abs=1e-6)
    assert float(m.value_loss) == pytest.approx(vf, rel=1e-5)
    assert float(m.entropy) == pytest.approx(ent, rel=1e-5)


def test_policy_gradient_matches_hand_derivation():
    params, batch = make_inputs(1)
    hp = HParams(vf_coef=0.0, ent_coef=0.0).as_arrays()
    grads, _ = jax.grad(a2c_loss, has_aux=True)(params, linear_policy(), batch, hp)
    *_, grad_w = numpy_loss(params, batch, 0.0, 0.0)
    np.testing.assert_allclose(grads["w"], grad_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads["v"], 0.0)


def prob_after_step(advantage: float) -> tuple[float, float, dict]:
    """p(a=2 | s) before and after one SGD step on a single-sample batch with this advantage."""
    params, _ = make_inputs(2)
    obs = jnp.ones((1, 1, OBS))
    one = lambda x, dtype=jnp.float32: jnp.full((1, 1), x, dtype)
    batch = Batch(obs, one(2, jnp.int32), one(advantage), one(0.0), one(False, bool))
    hp = HParams(vf_coef=0.0, ent_coef=0.0).as_arrays()
    grads, _ = jax.grad(a2c_loss, has_aux=True)(params, linear_policy(), batch, hp)
    new = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
    prob = lambda prm: float(jax.nn.softmax(linear_actor(prm, obs))[0, 0, 2])
    return prob(params), prob(new), grads


def test_positive_advantage_makes_action_more_likely():
    before, after, _ = prob_after_step(+1.0)
    assert after > before + 1e-4


def test_negative_advantage_makes_action_less_likely():
    before, after, _ = prob_after_step(-1.0)
    assert after < before - 1e-4


def test_zero_advantage_gives_zero_policy_gradient():
    before, after, grads = prob_after_step(0.0)
    assert np.all(np.asarray(grads["w"]) == 0.0)
    assert after == before
