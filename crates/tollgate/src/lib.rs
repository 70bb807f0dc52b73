//! The Tollgate server: configuration, wiring, gRPC adapters, health and reflection, and
//! the one command line ([`commands`]) that runs it and the admin CLI (`tollgate-cli`).
//! `main.rs` only parses the command line and calls in here, so tests can run the real
//! [`serve`](server::serve) on ephemeral ports.

pub mod access;
mod background;
pub mod commands;
pub mod config;
pub mod fd_limit;
mod files;
mod grpc;
mod health;
pub mod message_limits;
pub mod server;
