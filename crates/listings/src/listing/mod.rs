//! Listings: their fields and rules ([`fields`]), state machine
//! ([`lifecycle`]), storage ([`store`]), API shape ([`view`]), operations
//! ([`service`]) and HTTP handlers ([`handlers`]).

pub mod fields;
pub mod handlers;
pub mod lifecycle;
pub mod service;
pub mod store;
pub mod view;
