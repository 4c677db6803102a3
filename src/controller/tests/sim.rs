//! The seeded fault simulation.
