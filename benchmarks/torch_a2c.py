"""PyTorch baselines with the same algorithm, network and hyperparameters as a2c_jax's `sb3` preset.

- `TorchActorCritic`: separate [64, 64] tanh actor and critic, orthogonal init (sqrt 2 / 0.01 / 1).
- `a2c_update`: one batched critic pass over obs and final obs, GAE with SB3's time-limit handling,
  SB3's loss, clip_grad_norm, RMSprop(alpha 0.99, eps 1e-5) — one gradient step per rollout.
- `TorchCartPole`: CartPole-v1 written as batched tensor operations (gymnax's equations), so the
  whole loop runs on the torch device (the strongest PyTorch competitor, and the one for GPUs).
- `train_torch_native` (TorchCartPole) and `train_gymnasium` (gymnasium's vectorised CartPole).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn


class TorchActorCritic(nn.Module):
    """obs [B, obs_dim] -> (logits [B, A], value [B])."""

    def __init__(self, obs_dim: int, num_actions: int, hidden: int = 64) -> None:
        super().__init__()

        def mlp() -> nn.Sequential:
            return nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())

        self.pi, self.vf = mlp(), mlp()
        self.pi_head, self.vf_head = nn.Linear(hidden, num_actions), nn.Linear(hidden, 1)
        for module in [*self.pi, *self.vf]:
            if isinstance(module, nn.Linear):
                nn.init.orthogonal_(module.weight, math.sqrt(2))
                nn.init.zeros_(module.bias)
        for head, gain in ((self.pi_head, 0.01), (self.vf_head, 1.0)):
            nn.init.orthogonal_(head.weight, gain)
            nn.init.zeros_(head.bias)

    def actor(self, obs: torch.Tensor) -> torch.Tensor:
        return self.pi_head(self.pi(obs))

    def critic(self, obs: torch.Tensor) -> torch.Tensor:
        return self.vf_head(self.vf(obs)).squeeze(-1)


def sample_actions(logits: torch.Tensor) -> torch.Tensor:
    """Categorical samples by the Gumbel-max trick (no torch.distributions overhead)."""
    return torch.argmax(logits - torch.log(-torch.log(torch.rand_like(logits))), dim=-1)


def make_optimizer(model: nn.Module, lr: float = 7e-4) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(model.parameters(), lr=lr, alpha=0.99, eps=1e-5, weight_decay=0)


def a2c_update(
    model: TorchActorCritic,
    optimizer: torch.optim.Optimizer,
    obs: torch.Tensor,  # [T, N, obs_dim]
    actions: torch.Tensor,  # [T, N]
    rewards: torch.Tensor,  # [T, N]
    terminated: torch.Tensor,  # [T, N] bool
    truncated: torch.Tensor,  # [T, N] bool
    final_obs: torch.Tensor,  # [T, N, obs_dim]
    gamma: float = 0.99,
    gae_lambda: float = 1.0,
    ent_coef: float = 0.0,
    vf_coef: float = 0.5,
    max_grad_norm: float = 0.5,
) -> float:
    """One A2C gradient step; returns the loss."""
    t = obs.shape[0]
    with torch.no_grad():
        all_values = model.critic(torch.cat([obs, final_obs]))
        values, next_values = all_values[:t], all_values[t:]
        not_term = 1.0 - terminated.float()
        not_done = 1.0 - (terminated | truncated).float()
        deltas = rewards + gamma * not_term * next_values - values
        advantages = torch.zeros_like(rewards)
        running = torch.zeros_like(rewards[0])
        for i in reversed(range(t)):
            running = deltas[i] + gamma * gae_lambda * not_done[i] * running
            advantages[i] = running
        returns = advantages + values
    flat_obs = obs.reshape(-1, obs.shape[-1])
    logits = model.actor(flat_obs)
    value_pred = model.critic(flat_obs)
    log_p = torch.log_softmax(logits, -1)
    log_prob = log_p.gather(-1, actions.reshape(-1, 1)).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1).mean()
    loss = -(advantages.reshape(-1) * log_prob).mean()
    loss = loss + vf_coef * torch.mean((returns.reshape(-1) - value_pred) ** 2) - ent_coef * entropy
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return float(loss.detach())


class TorchCartPole:
    """N CartPole-v1 envs as tensors (gymnax's dynamics: Euler, 0.02 s, 500-step limit, auto-reset)."""

    gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    theta_limit, x_limit, max_steps = 12 * 2 * math.pi / 360, 2.4, 500

    def __init__(self, num_envs: int, device: str = "cpu", seed: int = 0) -> None:
        self.n, self.device = num_envs, device
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.state = self._fresh(num_envs)
        self.steps = torch.zeros(num_envs, dtype=torch.int32, device=device)

    def _fresh(self, n: int) -> torch.Tensor:
        return torch.rand(n, 4, generator=self.gen, device=self.device) * 0.1 - 0.05

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Returns (obs, reward, terminated, truncated, final_obs), each batched over N."""
        x, x_dot, theta, theta_dot = self.state.unbind(-1)
        force = torch.where(action == 1, self.force_mag, -self.force_mag)
        cos, sin = torch.cos(theta), torch.sin(theta)
        total_mass = self.masscart + self.masspole
        pml = self.masspole * self.length
        temp = (force + pml * theta_dot**2 * sin) / total_mass
        theta_acc = (self.gravity * sin - cos * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * cos**2 / total_mass)
        )
        x_acc = temp - pml * theta_acc * cos / total_mass
        x, x_dot = x + self.tau * x_dot, x_dot + self.tau * x_acc
        theta, theta_dot = theta + self.tau * theta_dot, theta_dot + self.tau * theta_acc
        final = torch.stack([x, x_dot, theta, theta_dot], -1)
        self.steps += 1
        terminated = (x.abs() > self.x_limit) | (theta.abs() > self.theta_limit)
        truncated = (self.steps >= self.max_steps) & ~terminated
        done = terminated | truncated
        self.state = torch.where(done[:, None], self._fresh(self.n), final)
        self.steps = torch.where(done, torch.zeros_like(self.steps), self.steps)
        reward = torch.ones(self.n, device=self.device)
        return self.state, reward, terminated, truncated, final


def train_torch_native(num_envs: int, num_steps: int, total_steps: int, device: str = "cpu", seed: int = 0) -> float:
    """A2C on TorchCartPole entirely on `device`; returns the wall-clock seconds."""
    torch.manual_seed(seed)
    env = TorchCartPole(num_envs, device, seed)
    model = TorchActorCritic(4, 2).to(device)
    opt = make_optimizer(model)
    obs = env.state
    start = time.perf_counter()
    for _ in range(total_steps // (num_envs * num_steps)):
        buf: dict[str, list[torch.Tensor]] = {k: [] for k in ("obs", "act", "rew", "term", "trunc", "final")}
        with torch.no_grad():
            for _ in range(num_steps):
                action = sample_actions(model.actor(obs))
                next_obs, reward, term, trunc, final = env.step(action)
                for k, v in zip(buf, (obs, action, reward, term, trunc, final), strict=True):
                    buf[k].append(v)
                obs = next_obs
        a2c_update(model, opt, *(torch.stack(buf[k]) for k in ("obs", "act", "rew", "term", "trunc", "final")))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def train_gymnasium(num_envs: int, num_steps: int, total_steps: int, seed: int = 0) -> float:
    """The same A2C stepping gymnasium's synchronous vector CartPole-v1; returns wall-clock seconds."""
    import gymnasium as gym

    torch.manual_seed(seed)
    envs = gym.make_vec(
        "CartPole-v1", num_envs=num_envs, vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )  # fmt: skip
    model = TorchActorCritic(4, 2)
    opt = make_optimizer(model)
    obs, _ = envs.reset(seed=seed)
    start = time.perf_counter()
    for _ in range(total_steps // (num_envs * num_steps)):
        rows: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "act", "rew", "term", "trunc", "final")}
        for _ in range(num_steps):
            with torch.no_grad():
                logits = model.actor(torch.as_tensor(obs, dtype=torch.float32))
                action = sample_actions(logits).numpy()
            next_obs, reward, term, trunc, info = envs.step(action)
            final = next_obs.copy()
            if "final_obs" in info:
                ended = info["_final_obs"]
                final[ended] = np.stack(info["final_obs"][ended])
            for k, v in zip(rows, (obs, action, reward, term, trunc & ~term, final), strict=True):
                rows[k].append(np.asarray(v))
            obs = next_obs
        tensors = [torch.as_tensor(np.stack(rows[k])) for k in rows]
        tensors = [t.float() if t.dtype == torch.float64 else t for t in tensors]
        a2c_update(
            model, opt, tensors[0].float(), tensors[1].long(), tensors[2].float(), *tensors[3:5], tensors[5].float()
        )
    envs.close()
    return time.perf_counter() - start
