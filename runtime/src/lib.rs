//! The Flint runtime.
