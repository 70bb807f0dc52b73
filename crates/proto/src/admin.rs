//! The admin credentials file, a contract between the server, which writes it into its
//! data dir on first start, and the CLI, which reads it when no other credentials are
//! given.

/// The file, in the data dir, holding the system tenant's first admin credentials: a JSON
/// object with the string members `tenant`, `client_id`, `client_secret` and `audience`
/// (the Management API identifier), written once, mode 0600.
pub const ADMIN_CREDENTIALS_FILE: &str = "admin-credentials.json";
