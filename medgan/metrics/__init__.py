"""Evaluation metrics: FID / KID / precision-recall on Inception and domain features, diversity, memorization."""
