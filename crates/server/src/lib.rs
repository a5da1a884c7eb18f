//! The Rentify binary as a library, so the integration tests build the
//! application with exactly the code `main` runs.

pub mod app;
pub mod cli;
pub mod consumers;
pub mod openapi;
pub mod retention;
pub mod seed;
pub mod worker;
