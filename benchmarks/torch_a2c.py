"""PyTorch baselines with the same algorithm, network and hyperparameters as a2c_jax's `sb3` preset.

- `TorchActorCritic`: separate [64, 64] tanh actor and critic, orthogonal init (sqrt 2 / 0.01 / 1).
- `a2c_update`: one batched critic pass over obs and final obs, GAE with SB3's time-limit handling,
  SB3's loss, clip_grad_norm, RMSprop(alpha 0.99, eps 1e-5) — one gradient step per rollout.
- `cartpole_step`: CartPole-v1 written as batched tensor operations (gymnax's equations), so the
  whole loop runs on the torch device (the strongest PyTorch competitor, and the one for GPUs).
- `NativeTrainer`: that loop eager (no per-update host sync), through `torch.compile`, or captured as
  one CUDA graph; `train_gymnasium`: the same A2C stepping gymnasium's vectorised CartPole.
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
) -> torch.Tensor:
    """One A2C gradient step; returns the loss as a detached tensor (no host sync: reading it is the
    caller's choice)."""
    batch = (obs, actions, rewards, terminated, truncated, final_obs)
    loss = a2c_loss(model, *batch, gamma=gamma, gae_lambda=gae_lambda, ent_coef=ent_coef, vf_coef=vf_coef)
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return loss.detach()


def a2c_loss(
    model: TorchActorCritic,
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
) -> torch.Tensor:
    """SB3's A2C loss of one rollout (a scalar): GAE targets with SB3's time-limit bootstrap, policy
    gradient, value error and entropy."""
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
    return loss + vf_coef * torch.mean((returns.reshape(-1) - value_pred) ** 2) - ent_coef * entropy


def cartpole_step(
    state: torch.Tensor, steps: torch.Tensor, action: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """N CartPole-v1 envs, one step, as pure tensor operations (gymnax's dynamics: Euler, 0.02 s,
    500-step limit, auto-reset from the global generator).

    state [N, 4], steps [N] int32, action [N] -> (next state = next obs [N, 4], next steps [N],
    reward [N], terminated [N] bool, truncated [N] bool, final obs [N, 4]).
    """
    gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    theta_limit, x_limit, max_steps = 12 * 2 * math.pi / 360, 2.4, 500
    x, x_dot, theta, theta_dot = state.unbind(-1)
    force = torch.where(action == 1, force_mag, -force_mag)
    cos, sin = torch.cos(theta), torch.sin(theta)
    total_mass = masscart + masspole
    pml = masspole * length
    temp = (force + pml * theta_dot**2 * sin) / total_mass
    theta_acc = (gravity * sin - cos * temp) / (length * (4.0 / 3.0 - masspole * cos**2 / total_mass))
    x_acc = temp - pml * theta_acc * cos / total_mass
    x, x_dot = x + tau * x_dot, x_dot + tau * x_acc
    theta, theta_dot = theta + tau * theta_dot, theta_dot + tau * theta_acc
    final = torch.stack([x, x_dot, theta, theta_dot], -1)
    steps = steps + 1
    terminated = (x.abs() > x_limit) | (theta.abs() > theta_limit)
    truncated = (steps >= max_steps) & ~terminated
    done = terminated | truncated
    fresh = torch.rand_like(state) * 0.1 - 0.05
    next_state = torch.where(done[:, None], fresh, final)
    next_steps = torch.where(done, torch.zeros_like(steps), steps)
    return next_state, next_steps, torch.ones_like(x), terminated, truncated, final


def rollout(
    model: TorchActorCritic, state: torch.Tensor, steps: torch.Tensor, num_steps: int
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    """`num_steps` steps of every env under the policy, without gradients.

    -> (state [N, 4], steps [N], (obs [T, N, 4], actions [T, N], rewards [T, N], terminated [T, N],
    truncated [T, N], final obs [T, N, 4])).
    """
    rows: list[tuple[torch.Tensor, ...]] = []
    with torch.no_grad():
        for _ in range(num_steps):
            action = sample_actions(model.actor(state))
            next_state, steps, reward, term, trunc, final = cartpole_step(state, steps, action)
            rows.append((state, action, reward, term, trunc, final))
            state = next_state
    return state, steps, tuple(torch.stack(column) for column in zip(*rows, strict=True))


VARIANTS = ("eager", "compile", "cuda_graph")


class NativeTrainer:
    """A2C on batched tensor CartPole entirely on `device`, in one of three forms:

    - "eager": plain PyTorch, no host sync inside the loop (the loss stays on the device);
    - "compile": the rollout, the loss (forward and backward) and the optimizer step each through
      `torch.compile` (mode "reduce-overhead", i.e. CUDA graphs, on a GPU; the default mode on a CPU);
    - "cuda_graph": one whole iteration (rollout, loss, backward, clipping, RMSprop with
      `capturable=True`) captured once as a CUDA graph and replayed (GPU only).

    `run(updates)` trains and returns when the device is done (one sync at the end).
    """

    def __init__(self, num_envs: int, num_steps: int = 5, device: str = "cpu", variant: str = "eager", seed: int = 0):
        if variant not in VARIANTS:
            raise ValueError(f"variant={variant!r}: one of {VARIANTS}")
        if variant == "cuda_graph" and not device.startswith("cuda"):
            raise ValueError("variant='cuda_graph' needs a CUDA device")
        torch.manual_seed(seed)
        self.device, self.variant, self.num_steps = device, variant, num_steps
        self.model = TorchActorCritic(4, 2).to(device)
        self.opt = torch.optim.RMSprop(
            self.model.parameters(), lr=7e-4, alpha=0.99, eps=1e-5, capturable=variant == "cuda_graph"
        )
        self.state = torch.rand(num_envs, 4, device=device) * 0.1 - 0.05
        self.steps = torch.zeros(num_envs, dtype=torch.int32, device=device)
        self._rollout, self._loss, self._step = rollout, a2c_loss, self._optimizer_step
        if variant == "compile":
            mode = "reduce-overhead" if device.startswith("cuda") else None
            self._rollout = torch.compile(rollout, mode=mode)
            self._loss = torch.compile(a2c_loss, mode=mode)
            self._step = torch.compile(self._optimizer_step, mode=mode)
        self._graph: torch.cuda.CUDAGraph | None = None
        if variant == "cuda_graph":
            self._capture()

    def _optimizer_step(self) -> None:
        nn.utils.clip_grad_norm_(self.model.parameters(), 0.5)
        self.opt.step()

    def _iteration(self) -> None:
        self.state, self.steps, batch = self._rollout(self.model, self.state, self.steps, self.num_steps)
        loss = self._loss(self.model, *batch)
        self.opt.zero_grad()
        loss.backward()
        self._step()

    def _capture(self) -> None:
        """Warm up on a side stream, then capture one iteration that updates the env state in place."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._inplace_iteration()
        torch.cuda.current_stream().wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._inplace_iteration()

    def _inplace_iteration(self) -> None:
        state, steps, batch = rollout(self.model, self.state, self.steps, self.num_steps)
        loss = a2c_loss(self.model, *batch)
        self.opt.zero_grad(set_to_none=False)
        loss.backward()
        self._optimizer_step()
        self.state.copy_(state)
        self.steps.copy_(steps)

    def run(self, updates: int) -> None:
        """Train `updates` updates; returns once the device has finished them."""
        for _ in range(updates):
            if self._graph is not None:
                self._graph.replay()
            else:
                self._iteration()
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def loss_on(self, batch: tuple[torch.Tensor, ...]) -> float:
        """This variant's loss function on a given rollout (to check the variants agree)."""
        loss = self._loss(self.model, *batch) if self.variant == "compile" else a2c_loss(self.model, *batch)
        return float(loss.detach())


def train_torch_native(num_envs: int, num_steps: int, total_steps: int, device: str = "cpu", seed: int = 0) -> float:
    """A2C on the batched tensor CartPole entirely on `device` (eager); returns the wall-clock seconds."""
    trainer = NativeTrainer(num_envs, num_steps, device, "eager", seed)
    start = time.perf_counter()
    trainer.run(total_steps // (num_envs * num_steps))
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
