//! The track stage (work in progress).
