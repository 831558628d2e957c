//! Following redirects one hop at a time, deciding per hop whether
//! `Authorization` goes along.

use ureq::Body;
use ureq::http::Response;

use super::status::check_status;
use super::token::{AuthOutcome, challenges};
use super::{Call, MAX_REDIRECTS, Method, Registry, limited};
use crate::error::{Error, Result};
use crate::reference::Reference;

impl Registry {
    /// Follows redirects one hop at a time, up to [`MAX_REDIRECTS`]. `Authorization`
    /// goes only to the registry's own origin (scheme, host and port); a hop to another
    /// origin that challenges on its own gets its own anonymous token, never the
    /// registry's credentials. A hop from HTTPS down to plain HTTP is refused.
    #[allow(clippy::too_many_arguments)] // one private call site; a struct would only rename them
    pub(super) fn follow_redirects(
        &self,
        method: Method,
        r: &Reference,
        from: &str,
        mut resp: Response<Body>,
        headers: &[(&str, &str)],
        authorization: Option<&str>,
        call: Call<'_>,
        auth: &AuthOutcome,
    ) -> Result<Response<Body>> {
        let home = origin(from).to_owned();
        let mut current = from.to_owned();
        for _ in 0..MAX_REDIRECTS {
            let Some(location) = resp.headers().get("location").and_then(|v| v.to_str().ok())
            else {
                break;
            };
            let next = resolve(&current, location);
            let refuse = |detail: String| Error::Registry {
                registry: r.registry().to_owned(),
                url: current.clone(),
                status: resp.status().as_u16(),
                code: None,
                detail: Some(detail),
            };
            if !(next.starts_with("https://") || next.starts_with("http://")) {
                return Err(refuse(format!(
                    "a redirect to `{next}`, which is not an http(s) URL"
                )));
            }
            if current.starts_with("https://") && next.starts_with("http://") {
                return Err(refuse(format!(
                    "a redirect from HTTPS down to plain HTTP ({next}); refused"
                )));
            }
            let same_origin = origin(&next) == home;
            let host = origin(&next)
                .split("://")
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            let agent = self.transport.agent(&next)?;
            let hop = |authorization: Option<&str>| {
                self.send(&host, call, |remaining| {
                    let mut req = match method {
                        Method::Get => agent.get(&next),
                        Method::Head => agent.head(&next),
                    };
                    for (name, value) in headers {
                        req = req.header(*name, *value);
                    }
                    if let Some(value) = authorization {
                        req = req.header("Authorization", value);
                    }
                    limited(req, remaining).call()
                })
            };
            resp = hop(if same_origin { authorization } else { None })?;
            if !same_origin && resp.status().as_u16() == 401 {
                if let Some(challenge) =
                    challenges(&resp).into_iter().find(|c| c.scheme == "bearer")
                {
                    let token = self.token_from(
                        &host,
                        next.starts_with("https://"),
                        &challenge,
                        "",
                        None,
                        call.deadline,
                    )?;
                    resp = hop(Some(&token.header()))?;
                }
            }
            current = next;
            if !is_redirect(&resp) {
                break;
            }
        }
        if is_redirect(&resp) {
            return Err(Error::Registry {
                registry: r.registry().to_owned(),
                url: current,
                status: resp.status().as_u16(),
                code: None,
                detail: Some(format!("more than {MAX_REDIRECTS} redirects")),
            });
        }
        check_status(r, &current, resp, auth)
    }
}

pub(super) fn is_redirect(resp: &Response<Body>) -> bool {
    matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308)
        && resp.headers().contains_key("location")
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url, |end| &url[..after_scheme + end])
}

/// `location` read against `base`: absolute URLs as they are, `/path` on the same
/// origin, anything else beside the base's last path segment.
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        location.to_owned()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{}://{rest}", base.split("://").next().unwrap_or("https"))
    } else if location.starts_with('/') {
        format!("{}{location}", origin(base))
    } else {
        let dir = base.split('?').next().unwrap_or(base);
        format!("{}/{location}", &dir[..dir.rfind('/').unwrap_or(dir.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_targets_resolve_against_their_base() {
        let base = "https://reg.io:5000/v2/a/blobs/sha256:1?x=y";
        assert_eq!(origin(base), "https://reg.io:5000");
        assert_eq!(resolve(base, "https://cdn.io/b"), "https://cdn.io/b");
        assert_eq!(resolve(base, "/elsewhere"), "https://reg.io:5000/elsewhere");
        assert_eq!(resolve(base, "//cdn.io/c"), "https://cdn.io/c");
        assert_eq!(
            resolve(base, "sibling"),
            "https://reg.io:5000/v2/a/blobs/sibling"
        );
    }
}
