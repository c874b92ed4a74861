//! Ramkey PID 1.
