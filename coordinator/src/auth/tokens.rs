//! The tokens file: reading it (refusing one others may read or anyone but its owner may
//! change), its lines `NAME ROLE[+programs] sha256:HEX`, and fresh tokens with their lines.

use std::path::Path;
use std::sync::Arc;

use super::{Access, Entry, Principal, Role, hash};

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
        "the tokens file {path} is readable by others or writable by more than its owner \
         (mode {mode:o}); make it private: chmod 600 {path}"
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
        // Others may not read it; nobody but its owner may change it (group read is fine:
        // Kubernetes mounts a Secret group-readable by the pod's fsGroup).
        if mode & 0o027 != 0 {
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
            if entries.iter().any(|e| e.hash == hash) {
                return Err(line_error(
                    "this token's hash is on another line: one token, one principal".into(),
                ));
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthError;

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
        let same_hash = good.replacen("a ", "b ", 1);
        let shared = Access::parse(&format!("{good}\n{same_hash}"), "tokens").unwrap_err();
        assert!(
            shared.to_string().contains("line 2: this token's hash"),
            "{shared}"
        );
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
        for private in [0o600, 0o640, 0o400, 0o440] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(private)).unwrap();
            assert!(Access::load(&path).unwrap().required(), "{private:o}");
        }
        for exposed in [0o604, 0o620, 0o666] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(exposed)).unwrap();
            assert!(Access::load(&path).is_err(), "{exposed:o}");
        }
    }
}
