//! Benchmark helper binaries live in `src/bin`; `cargo xtask bench` orchestrates them (see README).
