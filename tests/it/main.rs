//! The single integration test binary: one module per area, linked once.
mod contracts;
