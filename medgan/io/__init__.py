"""Readers and writers, one module per format, so tags, geometry and intensity conventions live in one place."""
