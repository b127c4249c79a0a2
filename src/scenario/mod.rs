//! Scenarios: the file format, and running one against a VM.

pub mod budget;
pub mod model;

pub use model::{Action, Check, CheckKind, Scenario, ScenarioError, Step};
