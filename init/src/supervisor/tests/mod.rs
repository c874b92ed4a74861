//! Engine tests with the fake spawner, checker and clock.
