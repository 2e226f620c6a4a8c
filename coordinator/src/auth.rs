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

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use fanfold_common::spec::JobStatus;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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

impl Principal {
    /// Every caller of a coordinator without a tokens file.
    pub fn anonymous() -> Principal {
        Principal {
            name: "anonymous".into(),
            role: Role::Admin,
            programs: true,
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

/// A tokens file that cannot be used; each names the file and, where it applies, the line.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read the tokens file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the tokens file {path} is readable or writable by others (mode {mode:o}); make it \
         private: chmod 600 {path}"
    )]
    Exposed { path: String, mode: u32 },
    #[error("{path} line {line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
    #[error("the tokens file {0} names no principal")]
    Empty(String),
}

/// `sha256:HEX` of a token, as the tokens file stores it.
fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A fresh random token workers present to each other's shuffle service for this run of
/// the coordinator.
pub fn shuffle_token() -> String {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("the system's random source");
    format!("ffs_{}", hex(&secret))
}

/// A fresh token for `name` with `role` (and `+programs` if `programs`), and its line for the
/// tokens file. The token is 32 random bytes, in hex, prefixed `ff_`.
pub fn new_token(name: &str, role: Role, programs: bool) -> Result<(String, String), String> {
    check_name(name)?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| format!("no randomness: {e}"))?;
    let token = format!("ff_{}", hex(&secret));
    let flags = if programs { "+programs" } else { "" };
    let line = format!(
        "{name} {}{flags} sha256:{}",
        role.name(),
        hex(&hash(&token))
    );
    Ok((token, line))
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
    {
        return Err(format!(
            "principal name '{name}' must be 1 to 64 letters, digits, '-', '_', '.' or '@'"
        ));
    }
    Ok(())
}

impl Access {
    /// Reads the tokens file at `path`, refusing one that others may read or write.
    pub fn load(path: &Path) -> Result<Access, TokensError> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display().to_string();
        let read = |source| TokensError::Read {
            path: shown.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TokensError::Exposed { path: shown, mode });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Access::parse(&text, &shown)
    }

    /// Parses a tokens file's text (`path` names it in errors).
    pub fn parse(text: &str, path: &str) -> Result<Access, TokensError> {
        let mut entries: Vec<Entry> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_error = |message: String| TokensError::Line {
                path: path.to_owned(),
                line: i + 1,
                message,
            };
            let content = line.split('#').next().unwrap_or_default().trim();
            if content.is_empty() {
                continue;
            }
            let fields: Vec<&str> = content.split_whitespace().collect();
            let [name, role, hash] = fields[..] else {
                return Err(line_error(
                    "expected NAME ROLE[+programs] sha256:HEX".to_owned(),
                ));
            };
            check_name(name).map_err(line_error)?;
            let (role, programs) = match role.split_once('+') {
                Some((role, "programs")) => (role, true),
                Some((_, flag)) => {
                    return Err(line_error(format!("unknown flag '+{flag}' (+programs)")));
                }
                None => (role, false),
            };
            let role: Role = role.parse().map_err(line_error)?;
            let hash = hash
                .strip_prefix("sha256:")
                .and_then(unhex)
                .ok_or_else(|| line_error("the hash must be sha256: and 64 hex digits".into()))?;
            if entries.iter().any(|e| &*e.principal.name == name) {
                return Err(line_error(format!("principal '{name}' is named twice")));
            }
            entries.push(Entry {
                hash,
                principal: Principal {
                    name: name.into(),
                    role,
                    programs,
                },
            });
        }
        if entries.is_empty() {
            return Err(TokensError::Empty(path.to_owned()));
        }
        Ok(Access::Tokens(Arc::new(entries)))
    }

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

    fn file(lines: &[String]) -> Access {
        Access::parse(&lines.join("\n"), "tokens").unwrap()
    }

    #[test]
    fn a_fresh_token_authenticates_as_its_line_says_and_nothing_else_does() {
        let (alice, alice_line) = new_token("alice", Role::Submit, false).unwrap();
        let (bob, bob_line) = new_token("bob", Role::Admin, true).unwrap();
        assert!(alice.starts_with("ff_") && alice.len() == 67, "{alice}");
        assert!(
            !alice_line.contains(&alice),
            "the line must not hold the token"
        );
        let access = file(&[
            "# principals".to_owned(),
            alice_line,
            String::new(),
            format!("{bob_line}  # the operator"),
        ]);
        let who = access
            .authenticate(Some(&format!("Bearer {alice}")))
            .unwrap();
        assert_eq!(
            (&*who.name, who.role, who.programs),
            ("alice", Role::Submit, false)
        );
        let who = access
            .authenticate(Some(&format!("bearer  {bob}")))
            .unwrap();
        assert_eq!(
            (&*who.name, who.role, who.programs),
            ("bob", Role::Admin, true)
        );
        // A browser's Basic credentials: any user, the token as the password.
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("x:{alice}"));
        let who = access
            .authenticate(Some(&format!("Basic {basic}")))
            .unwrap();
        assert_eq!(&*who.name, "alice");
        assert_eq!(access.authenticate(None), Err(AuthError::Missing));
        assert_eq!(
            access.authenticate(Some("Token abc")),
            Err(AuthError::Missing)
        );
        let wrong = format!("Bearer {}x", alice);
        assert_eq!(access.authenticate(Some(&wrong)), Err(AuthError::Unknown));
        assert_eq!(Access::Open.authenticate(None), Ok(Principal::anonymous()));
    }

    #[test]
    fn bad_lines_are_refused_naming_the_line() {
        let (_, good) = new_token("a", Role::Read, false).unwrap();
        let cases = [
            ("a read", "line 1: expected NAME ROLE[+programs] sha256:HEX"),
            ("a boss sha256:00", "line 1: unknown role 'boss'"),
            ("a read+root sha256:00", "line 1: unknown flag '+root'"),
            ("a read sha256:abc", "line 1: the hash must be sha256:"),
            ("a/b read sha256:00", "line 1: principal name 'a/b'"),
        ];
        for (line, expected) in cases {
            let error = Access::parse(line, "tokens").unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("tokens {expected}")),
                "{line}: {error}"
            );
        }
        let twice = Access::parse(&format!("{good}\n{good}"), "tokens").unwrap_err();
        assert_eq!(
            twice.to_string(),
            "tokens line 2: principal 'a' is named twice"
        );
        let empty = Access::parse("# nobody\n", "tokens").unwrap_err();
        assert_eq!(
            empty.to_string(),
            "the tokens file tokens names no principal"
        );
    }

    #[test]
    fn a_tokens_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let (_, line) = new_token("w", Role::Worker, false).unwrap();
        std::fs::write(&path, line).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = Access::load(&path).unwrap_err().to_string();
        assert!(
            error.contains("mode 644") && error.contains("chmod 600"),
            "{error}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Access::load(&path).unwrap().required());
    }

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
