//! What a route asks of its caller.

use flotilla_state_machine::Role;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Anyone: health, the OpenAPI document, the cluster's public status (peers read it
    /// before they share any credential), founding a cluster and bootstrapping its first
    /// token (each refused once done).
    Public,
    /// A live token of at least this role.
    AtLeast(Role),
    /// An admin's token, or a join token (`fjt_...`) the handler redeems: adding a member.
    AdminOrJoinToken,
    /// A join token alone, which the handler checks: fetching the cluster CA. No API token
    /// admits it.
    JoinToken,
}

impl Permission {
    /// Whether a token of `role` may call a route that asks this.
    pub fn admits(self, role: Role) -> bool {
        match self {
            Permission::Public => true,
            Permission::AtLeast(needed) => role >= needed,
            Permission::AdminOrJoinToken => role == Role::Admin,
            Permission::JoinToken => false,
        }
    }

    /// How the OpenAPI document and the errors name it.
    pub fn describe(self) -> String {
        match self {
            Permission::Public => "public".into(),
            Permission::AtLeast(role) => format!("{role} or above"),
            Permission::AdminOrJoinToken => "admin, or a join token".into(),
            Permission::JoinToken => "a join token (fjt_...)".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_admits_what_asks_for_it_or_less() {
        let submit = Permission::AtLeast(Role::Submitter);
        assert!(!submit.admits(Role::Viewer));
        assert!(submit.admits(Role::Submitter) && submit.admits(Role::Admin));
        assert!(Permission::Public.admits(Role::Viewer));
    }
}
