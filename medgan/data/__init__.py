"""Format-free data layer: slices, intensity normalisation, manifests, splits, sources."""
