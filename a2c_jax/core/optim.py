"""The optax chain every trainer in the library uses (A2C on environments, and RLHF on tokens)."""

from __future__ import annotations

import jax
import optax

from a2c_jax.config import HParams


def make_optimizer(kind: str, hparams: HParams, learning_rate: jax.Array | float) -> optax.GradientTransformation:
    """clip_by_global_norm(max_grad_norm) -> RMSprop (PyTorch/SB3 semantics) or Adam.

    RMSprop matches torch.optim.RMSprop: squares start at 0 and eps is added outside the sqrt.
    """
    if kind == "rmsprop":
        opt = optax.rmsprop(
            learning_rate, decay=hparams.rms_decay, eps=hparams.eps, initial_scale=0.0, eps_in_sqrt=False
        )
    else:
        opt = optax.adam(learning_rate, eps=hparams.eps)
    return optax.chain(optax.clip_by_global_norm(hparams.max_grad_norm), opt)
