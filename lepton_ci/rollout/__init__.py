"""Rollouts: the traffic splitter in front of podman pods, and the canary loop that shifts
requests to a new revision step by step, judging each step before the next."""
