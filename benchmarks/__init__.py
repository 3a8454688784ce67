"""Speed and memory benchmarks; each module appends its figures to docs/benchmarks.md."""
