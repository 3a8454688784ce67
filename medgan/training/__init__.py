"""Shared training infrastructure: the fit loop, checkpoints, EMA and the batch sampler, for every synthesizer."""
