//! Ramkey builder library.
