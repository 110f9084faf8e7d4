//! Which tenants a caller may see and act in. A token names its tenants (none: every tenant);
//! under `--auth none` there is no caller and every tenant is open, as the warning at start
//! says. Handlers ask the scope before they show or touch a pipeline or job: what a caller may
//! not see answers exactly as what does not exist (404), so a scoped token learns nothing of
//! other tenants' work, not even that it is there.

use super::Caller;
use crate::api::ApiError;
use axum::http::StatusCode;
use std::collections::BTreeSet;

/// The header a submission names its tenant in.
pub const TENANT_HEADER: &str = "x-flotilla-tenant";
/// The tenant of a submission that names none, for a caller that may use it.
pub const DEFAULT_TENANT: &str = "default";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantScope {
    /// Every tenant: an unrestricted token, or `--auth none`.
    All,
    /// These tenants only (never empty).
    Only(BTreeSet<String>),
}

impl TenantScope {
    /// The scope of `caller` (none under `--auth none`).
    pub fn of(caller: Option<&Caller>) -> TenantScope {
        match caller {
            Some(c) if !c.tenants.is_empty() => TenantScope::Only(c.tenants.clone()),
            _ => TenantScope::All,
        }
    }

    pub fn admits(&self, tenant: &str) -> bool {
        match self {
            TenantScope::All => true,
            TenantScope::Only(tenants) => tenants.contains(tenant),
        }
    }

    /// The tenants a list reads, given its `tenant` filter: `None` for every tenant (an
    /// unrestricted caller without a filter), else those named that the scope admits, which
    /// may be none (a tenant the caller may not see lists as one with nothing in it).
    pub fn tenants_to_list<'a>(&'a self, wanted: Option<&'a str>) -> Option<Vec<&'a str>> {
        match (self, wanted) {
            (TenantScope::All, None) => None,
            (TenantScope::All, Some(t)) => Some(vec![t]),
            (TenantScope::Only(tenants), None) => Some(tenants.iter().map(String::as_str).collect()),
            (TenantScope::Only(tenants), Some(t)) => Some(tenants.contains(t).then_some(t).into_iter().collect()),
        }
    }

    pub fn is_restricted(&self) -> bool {
        matches!(self, TenantScope::Only(_))
    }

    /// The tenant a submission goes to, given its `X-Flotilla-Tenant` header: the header's
    /// tenant if the scope admits it; without one, `default` for a caller that may use it,
    /// else the caller's only tenant. A caller of several tenants, none of them `default`,
    /// must say which.
    pub fn submission_tenant(&self, header: Option<&str>) -> Result<String, ApiError> {
        let forbidden =
            |message: String| ApiError::new(StatusCode::FORBIDDEN, "forbidden", message).field("X-Flotilla-Tenant");
        match (self, header) {
            (TenantScope::All, Some(t)) => Ok(t.to_string()),
            (TenantScope::All, None) => Ok(DEFAULT_TENANT.to_string()),
            (TenantScope::Only(tenants), Some(t)) if tenants.contains(t) => Ok(t.to_string()),
            (TenantScope::Only(tenants), Some(t)) => Err(forbidden(format!(
                "this token may not act in tenant {t:?} (it may in: {})",
                list(tenants)
            ))),
            (TenantScope::Only(tenants), None) if tenants.contains(DEFAULT_TENANT) => Ok(DEFAULT_TENANT.to_string()),
            (TenantScope::Only(tenants), None) if tenants.len() == 1 => {
                Ok(tenants.iter().next().cloned().unwrap_or_default())
            }
            (TenantScope::Only(tenants), None) => Err(forbidden(format!(
                "this token acts in several tenants ({}): name one in X-Flotilla-Tenant",
                list(tenants)
            ))),
        }
    }
}

/// A handler takes the caller's scope as an argument: the gate put the `Caller` in the
/// request's extensions (none under `--auth none`, or on a public route: every tenant).
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for TenantScope {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(TenantScope::of(parts.extensions.get::<Caller>()))
    }
}

fn list(tenants: &BTreeSet<String>) -> String {
    tenants.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_state_machine::{Role, TokenId};

    fn caller(tenants: &[&str]) -> Caller {
        Caller {
            token: TokenId(1),
            name: "t".into(),
            role: Role::Submitter,
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn an_unrestricted_caller_acts_anywhere_and_defaults_to_default() {
        for scope in [TenantScope::of(None), TenantScope::of(Some(&caller(&[])))] {
            assert_eq!(scope, TenantScope::All);
            assert!(scope.admits("anything"));
            assert_eq!(scope.submission_tenant(None).unwrap(), "default");
            assert_eq!(scope.submission_tenant(Some("web")).unwrap(), "web");
        }
    }

    #[test]
    fn a_scoped_caller_acts_in_its_tenants_only() {
        let one = TenantScope::of(Some(&caller(&["web"])));
        assert!(one.is_restricted());
        assert!(one.admits("web") && !one.admits("default") && !one.admits("ops"));
        assert_eq!(one.submission_tenant(None).unwrap(), "web");
        assert_eq!(one.submission_tenant(Some("web")).unwrap(), "web");
        let e = one.submission_tenant(Some("ops")).unwrap_err();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert_eq!(e.field_name(), Some("X-Flotilla-Tenant"));

        let two = TenantScope::of(Some(&caller(&["web", "ops"])));
        assert_eq!(two.submission_tenant(None).unwrap_err().status(), StatusCode::FORBIDDEN);
        assert_eq!(two.submission_tenant(Some("ops")).unwrap(), "ops");
        let with_default = TenantScope::of(Some(&caller(&["web", "default"])));
        assert_eq!(with_default.submission_tenant(None).unwrap(), "default");
    }
}
