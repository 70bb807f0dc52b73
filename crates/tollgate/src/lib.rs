//! The Tollgate server and its admin CLI: configuration, wiring, gRPC adapters, health and
//! reflection. `main.rs` only parses the command line and calls in here, so tests can run
//! the real [`serve`](server::serve) on ephemeral ports.

mod background;
pub mod cli;
pub mod config;
pub mod fd_limit;
mod files;
mod grpc;
pub mod message_limits;
pub mod server;
