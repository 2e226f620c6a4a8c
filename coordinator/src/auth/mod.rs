//! Who may do what. The tokens file names each principal, its role and a hash of its token;
//! every gRPC call and every HTTP request that shows or changes a job is authenticated here
//! ([`Access::authenticate`]) and checked against the principal's role ([`Principal`]).
//!
//! Without a tokens file ([`Access::Open`]) every caller is the anonymous admin, as on one
//! machine; the binary refuses that on an address other machines can reach unless
//! `--insecure` says so.
//!
//! The file has one principal per line: `NAME ROLE[+programs] sha256:HEX`, `#` starting a
//! comment. Roles: `worker` (attach only), `submit` (its own jobs), `read` (see every job),
//! `admin` (everything); `+programs` lets the principal submit jobs that run programs
//! (streaming). Only the SHA-256 of a token is stored: a leaked file does not leak tokens.
//! A presented token is hashed and compared with every line in constant time.

mod tokens;

use std::fmt;
use std::sync::Arc;

use fanfold_common::spec::JobStatus;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use tokens::{TokensError, new_token, shuffle_token};

/// What a principal may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Attach as a worker; nothing else.
    Worker,
    /// Submit jobs, and watch, fetch and cancel its own.
    Submit,
    /// See every job and its result (dashboards); change nothing.
    Read,
    /// Everything, on any job.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Worker, Role::Submit, Role::Read, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Worker => "worker",
            Role::Submit => "submit",
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == text)
            .ok_or_else(|| format!("unknown role '{text}' (worker, submit, read or admin)"))
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: Arc<str>,
    pub role: Role,
    /// May submit jobs that run programs (streaming).
    pub programs: bool,
}

/// The name of every caller of a coordinator without a tokens file.
pub const ANONYMOUS: &str = "anonymous";

impl Principal {
    /// Every caller of a coordinator without a tokens file.
    pub fn anonymous() -> Principal {
        Principal {
            name: ANONYMOUS.into(),
            role: Role::Admin,
            programs: true,
        }
    }

    /// `Ok` if `allowed`, else why not, naming the principal and the action only (the one
    /// refusal message of the gRPC and HTTP ports).
    pub fn grant(&self, allowed: bool, action: impl FnOnce() -> String) -> Result<(), String> {
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "principal '{}' (role {}) may not {}",
                self.name,
                self.role.name(),
                action()
            ))
        }
    }

    pub fn may_submit(&self) -> bool {
        matches!(self.role, Role::Submit | Role::Admin)
    }

    pub fn may_attach(&self) -> bool {
        matches!(self.role, Role::Worker | Role::Admin)
    }

    /// May see the fleet's workers (the workers page and API).
    pub fn may_see_workers(&self) -> bool {
        !matches!(self.role, Role::Worker)
    }

    /// May see `job`: its status, progress and result.
    pub fn may_see(&self, job: &JobStatus) -> bool {
        match self.role {
            Role::Admin | Role::Read => true,
            Role::Submit => self.owns(job),
            Role::Worker => false,
        }
    }

    /// May cancel `job`.
    pub fn may_cancel(&self, job: &JobStatus) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Submit => self.owns(job),
            Role::Read | Role::Worker => false,
        }
    }

    fn owns(&self, job: &JobStatus) -> bool {
        job.spec.owner.as_deref() == Some(&*self.name)
    }
}

/// One line of the tokens file.
pub struct Entry {
    hash: [u8; 32],
    principal: Principal,
}

/// How callers are authenticated.
#[derive(Clone)]
pub enum Access {
    /// No tokens file: everyone is [`Principal::anonymous`].
    Open,
    /// The principals of a tokens file ([`Access::load`]).
    Tokens(Arc<Vec<Entry>>),
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Open => f.write_str("Access::Open"),
            Access::Tokens(entries) => write!(f, "Access::Tokens({} principals)", entries.len()),
        }
    }
}

/// Why a caller was not authenticated. The messages never contain what was presented.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error(
        "this coordinator needs a token: set FANFOLD_TOKEN or --token-file (for a browser, any \
         user name and the token as the password)"
    )]
    Missing,
    #[error("the token presented is not valid here")]
    Unknown,
}

/// `sha256:HEX` of a token, as the tokens file stores it.
fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Access {
    /// Whether callers must present a token.
    pub fn required(&self) -> bool {
        matches!(self, Access::Tokens(_))
    }

    /// The principal whose token `presented` is (an `authorization` value: `Bearer TOKEN`, or
    /// `Basic` with the token as the password, for browsers).
    pub fn authenticate(&self, presented: Option<&str>) -> Result<Principal, AuthError> {
        let entries = match self {
            Access::Open => return Ok(Principal::anonymous()),
            Access::Tokens(entries) => entries,
        };
        let token = presented.and_then(token_of).ok_or(AuthError::Missing)?;
        let presented = hash(&token);
        // Every line is compared, in constant time, whatever matches.
        let mut found = None;
        for entry in entries.iter() {
            if bool::from(entry.hash.ct_eq(&presented)) {
                found = Some(&entry.principal);
            }
        }
        found.cloned().ok_or(AuthError::Unknown)
    }
}

/// The token in an `authorization` value.
fn token_of(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return Some(password.to_owned());
    }
    None
}

/// Authenticates every gRPC request of the services it wraps, putting the [`Principal`] in
/// the request's extensions for the handlers' checks; a request that fails is answered
/// `UNAUTHENTICATED` before any handler runs.
#[derive(Clone, Debug)]
pub struct Interceptor(pub Access);

impl tonic::service::Interceptor for Interceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        match self.0.authenticate(presented) {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
                Ok(request)
            }
            Err(e) => {
                let peer = request.remote_addr().map(|a| a.to_string());
                tracing::warn!(peer, outcome = "unauthenticated", "request refused: {e}");
                Err(tonic::Status::unauthenticated(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_what_the_readme_says() {
        let job = |owner: &str| {
            let mut status = crate::job::placeholder_status(fanfold_common::ids::JobId::new());
            status.spec.owner = Some(owner.to_owned());
            status
        };
        let who = |role| Principal {
            name: "alice".into(),
            role,
            programs: false,
        };
        let (own, other) = (job("alice"), job("bob"));
        let grants = |p: &Principal| {
            [
                p.may_submit(),
                p.may_attach(),
                p.may_see(&own),
                p.may_see(&other),
                p.may_cancel(&own),
                p.may_cancel(&other),
            ]
        };
        assert_eq!(
            grants(&who(Role::Worker)),
            [false, true, false, false, false, false]
        );
        assert_eq!(
            grants(&who(Role::Submit)),
            [true, false, true, false, true, false]
        );
        assert_eq!(
            grants(&who(Role::Read)),
            [false, false, true, true, false, false]
        );
        assert_eq!(
            grants(&who(Role::Admin)),
            [true, true, true, true, true, true]
        );
    }
}
