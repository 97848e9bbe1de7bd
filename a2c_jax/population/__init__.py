"""populations of agents: search spaces, sweeps (one vmapped program per static config), PBT, Optuna studies."""
