"""A simulated microscope for adaptive acquisition: a gymnasium environment and strategies to run in it.

- :mod:`fluorecon.env.microscope` — :class:`SmartMicroscopeEnv` (photon budget, bleaching,
  phototoxicity, restoration in the loop);
- :mod:`fluorecon.env.policies` — fixed settings, the best fixed setting found by search, a heuristic
  adaptive strategy, PPO agents (stable-baselines3), and episode evaluation.
"""
