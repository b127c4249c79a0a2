//! Parsers for journal output (to be written).

use super::Analyzer;

pub fn analyzers() -> Vec<Box<dyn Analyzer>> {
    Vec::new()
}
