//! qmp (being written).
