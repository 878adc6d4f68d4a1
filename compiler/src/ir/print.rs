//! The deterministic IR printer.
