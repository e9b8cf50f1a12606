//! Benchmarks live in `benches/`; see README.md for how to run them and the figures.
