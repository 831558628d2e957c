//! Following redirects one hop at a time, deciding per hop whether
//! `Authorization` goes along.

use ureq::Body;
use ureq::http::Response;

use super::Registry;
use super::call::{Call, MAX_REDIRECTS, Method, limited, refused};
use super::status::{Answer, check_status};
use super::token::challenges;
use super::url::{Url, UrlRefusal};
use crate::auth::AuthOutcome;
use crate::error::{Error, Result};
use crate::reference::Reference;

impl Registry {
    /// Follows redirects one hop at a time, up to [`MAX_REDIRECTS`]. `Authorization`
    /// goes only to the registry's own origin (scheme, host and port); a hop to another
    /// origin that challenges on its own gets its own anonymous token, never the
    /// registry's credentials. A `Location` that is not an http(s) URL, carries user
    /// information, or leads from HTTPS down to plain HTTP is refused.
    #[allow(clippy::too_many_arguments)] // one private call site; a struct would only rename them
    pub(super) fn follow_redirects(
        &self,
        method: Method,
        r: &Reference,
        home: &Url,
        mut resp: Response<Body>,
        headers: &[(&str, &str)],
        authorization: Option<&str>,
        call: Call<'_>,
        auth: &AuthOutcome,
    ) -> Result<Answer> {
        let mut current = home.clone();
        for _ in 0..MAX_REDIRECTS {
            let Some(location) = resp.headers().get("location").and_then(|v| v.to_str().ok())
            else {
                break;
            };
            let next = current
                .join(location)
                .map_err(|e| refused(r.registry(), "redirect target", location, e))?;
            if current.is_https() && !next.is_https() {
                return Err(Error::RefusedUrl {
                    registry: r.registry().to_owned(),
                    what: "redirect target",
                    host: Some(next.authority()),
                    url: next.redacted(),
                    reason: UrlRefusal::Downgrade,
                });
            }
            let same_origin = next.same_origin(home);
            let host = next.authority();
            let target = next.as_request();
            let agent = self.transport.agent(&target)?;
            let hop = |authorization: Option<&str>| {
                self.send(&host, call, |remaining| {
                    let mut req = match method {
                        Method::Get => agent.get(&target),
                        Method::Head => agent.head(&target),
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
                        next.is_https(),
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
        let answer = Answer {
            resp,
            foreign: !current.same_origin(home),
            url: current,
        };
        if is_redirect(&answer.resp) {
            return Err(answer.error(
                r,
                None,
                Some(format!("more than {MAX_REDIRECTS} redirects")),
            ));
        }
        check_status(r, answer, auth)
    }
}

pub(super) fn is_redirect(resp: &Response<Body>) -> bool {
    matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308)
        && resp.headers().contains_key("location")
}
