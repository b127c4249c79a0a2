//! vm (being written).
