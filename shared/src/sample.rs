//! Realistic generated events.
