"""Shared training infrastructure: the fit loop, checkpoints, EMA and seeding, for every synthesizer."""
