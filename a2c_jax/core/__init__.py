"""The pure maths: distributions, networks, rollout, advantages, losses, optim, train, evaluate, prng,
stats. Knows nothing of files, processes or devices."""
