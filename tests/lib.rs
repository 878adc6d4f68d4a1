//! Workspace-level tests live in this crate's tests/ directory.
