//! The event that carries a rejected message to `sumud.deadletter.v1`.

pub use crate::deadletter::DeadLetter;

/// CloudEvents type of a dead-letter record.
pub const DEADLETTER_RECORDED: &str = "org.sumud.deadletter.recorded";
