//! `WWW-Authenticate` parsing (RFC 7235 §4.1).
//!
//! One header value may hold several challenges (`Basic realm="x", Bearer realm="y"`);
//! a parameter value is a token or a quoted string with `\` escapes, so
//! `scope="repository:a:pull,push"` keeps its comma. Scheme and parameter names
//! compare case-insensitively and are stored lowercased. token68 credentials
//! (`Negotiate abc==`) are kept as a parameter with an empty name.

/// One challenge: a scheme and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// Lowercased scheme, e.g. `bearer`.
    pub(crate) scheme: String,
    /// Lowercased names with their unescaped values, in header order.
    pub(crate) params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (lowercase), if present.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn skip_ws_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        (self.pos > start).then(|| String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn quoted(&mut self) -> Result<String, String> {
        self.pos += 1; // opening quote
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err("unterminated quoted string".to_owned()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c) => out.push(c),
                        None => return Err("unterminated quoted string".to_owned()),
                    }
                    self.pos += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

/// Parses one `WWW-Authenticate` header value into its challenges.
pub(crate) fn parse_challenges(header: &str) -> Result<Vec<Challenge>, String> {
    let mut c = Cursor {
        s: header.as_bytes(),
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        c.skip_ws_and_commas();
        if c.peek().is_none() {
            break;
        }
        let scheme = c
            .token()
            .ok_or_else(|| format!("expected an auth scheme at byte {}", c.pos))?;
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        loop {
            c.skip_ws_and_commas();
            let save = c.pos;
            let Some(name) = c.token() else {
                if c.peek().is_some() {
                    return Err(format!("unexpected character at byte {}", c.pos));
                }
                break;
            };
            c.skip_ws();
            if c.peek() != Some(b'=') {
                // A token with no `=` starts the next challenge.
                c.pos = save;
                break;
            }
            c.pos += 1;
            c.skip_ws();
            let value = match c.peek() {
                Some(b'"') => c.quoted()?,
                Some(b',') | None if challenge.params.is_empty() => {
                    // token68 ending in '=' padding, e.g. `Negotiate abc=`.
                    challenge.params.push((String::new(), format!("{name}=")));
                    continue;
                }
                _ => c
                    .token()
                    .ok_or_else(|| format!("parameter `{name}` has no value"))?,
            };
            challenge.params.push((name.to_ascii_lowercase(), value));
        }
        out.push(challenge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_style_bearer() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull,push""#;
        let c = parse_challenges(h).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:library/ubuntu:pull,push")
        );
    }

    #[test]
    fn several_challenges_and_escapes() {
        let c =
            parse_challenges(r#"Basic realm="a\"b", BEARER Realm=x, error=invalid_token"#).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].param("realm"), Some("a\"b"));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("realm"), Some("x"));
        assert_eq!(c[1].param("error"), Some("invalid_token"));
    }

    #[test]
    fn malformed_is_an_error_not_a_panic() {
        assert!(parse_challenges(r#"Bearer realm="unterminated"#).is_err());
        assert!(parse_challenges("Bearer realm=").is_ok());
        assert!(parse_challenges("Bearer realm=,x=\"").is_err());
        assert_eq!(parse_challenges("").unwrap(), vec![]);
    }
}
