//! Who may call the REST API: bearer tokens checked against the replicated token table, each
//! route's permission declared in the route table (`api::routes`), and the secrets themselves,
//! which only their holder and, once, the response that created them ever see.
//!
//! `--auth tokens` (the default) enforces it; `--auth none` lets every caller through and says
//! so loudly at start. `--admin-token-file` pre-shares the first admin token (`preshared`).

pub mod gate;
pub mod permission;
pub mod preshared;
pub mod scope;
pub mod secret;
pub mod session_cookie;

pub use gate::{AuthMode, Caller};
pub use permission::Permission;
pub use scope::TenantScope;
pub use secret::{JoinSecret, TokenSecret};
