//! Registry mirrors and pull-through caches: which hosts may answer for a
//! registry, in which order, and how a reference is rewritten for one. Parsing
//! only; the requests go through the registry code like any other, to the
//! mirror's host, with the mirror's own credentials.

use std::fmt;
use std::time::Instant;

use crate::error::{Error, Result, SettingProblem};
use crate::event::{Events, Source};
use crate::reference::Reference;

/// The environment variable: `REGISTRY=MIRROR[,MIRROR...][;REGISTRY=MIRROR...]`.
pub(crate) const MIRRORS_VAR: &str = "FORGE_OCI_MIRRORS";

/// One mirror of a registry: `host[:port][/path-prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mirror {
    /// `host[:port]`, contacted instead of the registry.
    pub(crate) host: String,
    /// Put in front of the repository (Harbor-style proxy projects); may be empty.
    pub(crate) prefix: String,
    /// Answers digest-pinned references only; tags always come from the registry
    /// (podman's `pull-from-mirror = "digest-only"`).
    pub(crate) digest_only: bool,
}

impl Mirror {
    /// `r` as this mirror serves it.
    pub(crate) fn reference(&self, r: &Reference) -> Reference {
        r.at_mirror(&self.host, &self.prefix)
    }
}

impl fmt::Display for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

/// Each registry's mirrors, in the order they are tried.
#[derive(Debug, Clone, Default)]
pub(crate) struct Mirrors(Vec<(String, Mirror)>);

impl Mirrors {
    /// Adds `mirror` for `registry` after those already there.
    pub(crate) fn push(&mut self, registry: String, mirror: Mirror) {
        self.0.push((registry, mirror));
    }

    /// Appends all of `other`'s after this one's.
    pub(crate) fn extend(&mut self, other: Mirrors) {
        self.0.extend(other.0);
    }

    /// Runs `attempt` against each mirror that may answer `r`, in order, then
    /// against the registry itself (`r`). A mirror that fails as a source can
    /// (unreachable, refusing, not holding `r`, serving bytes that do not verify,
    /// too slow) is reported and passed over; the cache's failures are returned.
    ///
    /// `attempt` is given the deadline its source must answer by: with a pull
    /// deadline, each mirror gets an equal share of the time left with the
    /// sources after it, so a mirror that stalls leaves the registry time to
    /// answer; the registry gets whatever is left.
    pub(crate) fn attempt<T>(
        &self,
        r: &Reference,
        deadline: Option<Instant>,
        events: &Events,
        mut attempt: impl FnMut(&Reference, Option<Instant>) -> Result<T>,
    ) -> Result<T> {
        let mirrors: Vec<&Mirror> = self.for_reference(r).collect();
        let mut after = mirrors.len();
        for mirror in mirrors {
            let share = share(deadline, after);
            after -= 1;
            match attempt(&mirror.reference(r), share) {
                Ok(t) => return Ok(t),
                // Past its share, or past the pull's deadline (the registry then says so).
                Err(e) if e.is_source_failure() || matches!(e, Error::Deadline { .. }) => {
                    events.skipped(&Source::Mirror(mirror.to_string()), r, &e);
                }
                Err(e) => return Err(e),
            }
        }
        attempt(r, deadline)
    }

    /// The mirrors that may answer `r`, in order: for a tag, those not limited to
    /// digests.
    pub(crate) fn for_reference<'a>(
        &'a self,
        r: &'a Reference,
    ) -> impl Iterator<Item = &'a Mirror> {
        self.0
            .iter()
            .filter(move |(registry, m)| {
                registry.eq_ignore_ascii_case(r.registry())
                    && (r.digest().is_some() || !m.digest_only)
            })
            .map(|(_, m)| m)
    }
}

/// A source's share of the time left before `deadline`, shared equally with
/// the `after` sources tried after it (the registry always among them).
fn share(deadline: Option<Instant>, after: usize) -> Option<Instant> {
    let deadline = deadline?;
    let now = Instant::now();
    let sources = u32::try_from(after.saturating_add(1)).unwrap_or(u32::MAX);
    let left = deadline.saturating_duration_since(now) / sources;
    Some(now.checked_add(left).map_or(deadline, |d| d.min(deadline)))
}

/// The registry a mirror entry is for, as references name it (`docker.io` for
/// Docker Hub, whichever of its names is written).
pub(crate) fn registry_name(registry: &str) -> Result<String, SettingProblem> {
    let written = registry.trim();
    let bad = || SettingProblem::mirror_registry(written);
    // Host names are case-insensitive: `DOCKER.IO` is Docker Hub too.
    let lower = written.to_ascii_lowercase();
    let registry = lower.as_str();
    if registry.is_empty() || registry.contains('/') {
        return Err(bad());
    }
    let probe: Reference = format!("{registry}/probe").parse().map_err(|_| bad())?;
    // `registry-1.docker.io` is where docker.io's API lives: the same registry.
    if registry.eq_ignore_ascii_case("registry-1.docker.io") {
        return Ok("docker.io".to_owned());
    }
    match probe.registry() {
        "docker.io" => Ok("docker.io".to_owned()),
        r if r.eq_ignore_ascii_case(registry) => Ok(r.to_owned()),
        _ => Err(bad()),
    }
}

/// Reads one mirror, `host[:port][/path-prefix]`. The host must read as a
/// registry host does in a reference (a `.` or `:` in it, or `localhost`), and
/// the prefix as repository path components.
pub(crate) fn parse_mirror(mirror: &str, digest_only: bool) -> Result<Mirror, SettingProblem> {
    let mirror = mirror.trim();
    let bad = || SettingProblem::mirror_host(mirror);
    let trimmed = mirror.trim_end_matches('/');
    let (host, prefix) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    if host.is_empty() || mirror.contains(['@', '?', '#', ' ', '=', ',', ';']) {
        return Err(bad());
    }
    let path = if prefix.is_empty() {
        "probe".to_owned()
    } else {
        format!("{prefix}/probe")
    };
    let probe: Reference = format!("{host}/{path}").parse().map_err(|_| bad())?;
    if !probe.registry().eq_ignore_ascii_case(host) || probe.repository() != path {
        return Err(bad());
    }
    Ok(Mirror {
        host: host.to_ascii_lowercase(),
        prefix: prefix.to_owned(),
        digest_only,
    })
}

/// Parses `FORGE_OCI_MIRRORS`: `REGISTRY=MIRROR[,MIRROR...][;REGISTRY=MIRROR...]`.
/// Blank entries are ignored.
pub(crate) fn parse_list(value: &str) -> Result<Mirrors, SettingProblem> {
    let mut out = Mirrors::default();
    for entry in value.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (registry, mirrors) = entry
            .split_once('=')
            .ok_or_else(|| SettingProblem::mirror_entry(entry))?;
        let registry = registry_name(registry)?;
        for m in mirrors.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            out.push(registry.clone(), parse_mirror(m, false)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example_parses_in_order() {
        let m =
            parse_list("docker.io=mirror.corp:5000;ghcr.io=harbor.corp/ghcr-proxy,127.0.0.1:5001")
                .unwrap();
        let r: Reference = "ghcr.io/owner/plugin:1".parse().unwrap();
        let got: Vec<String> = m.for_reference(&r).map(ToString::to_string).collect();
        assert_eq!(got, ["harbor.corp/ghcr-proxy", "127.0.0.1:5001"]);
        let at = m.for_reference(&r).next().unwrap().reference(&r);
        assert_eq!(at.to_string(), "harbor.corp/ghcr-proxy/owner/plugin:1");
        assert_eq!(at.namespace(), Some("ghcr.io"));
        let hub: Reference = "alpine".parse().unwrap();
        let got: Vec<String> = m.for_reference(&hub).map(ToString::to_string).collect();
        assert_eq!(got, ["mirror.corp:5000"]);
        assert_eq!(
            m.for_reference(&hub)
                .next()
                .unwrap()
                .reference(&hub)
                .to_string(),
            "mirror.corp:5000/library/alpine:latest"
        );
    }

    #[test]
    fn digest_only_mirrors_answer_pins_only() {
        let mut m = Mirrors::default();
        m.push("ghcr.io".into(), parse_mirror("pins.corp", true).unwrap());
        let tag: Reference = "ghcr.io/a/b:1".parse().unwrap();
        assert_eq!(m.for_reference(&tag).count(), 0);
        let pin: Reference = format!("ghcr.io/a/b@sha256:{}", "a".repeat(64))
            .parse()
            .unwrap();
        assert_eq!(m.for_reference(&pin).count(), 1);
    }

    #[test]
    fn registry_names_are_case_insensitive_as_hosts_are() {
        let m = parse_list("DOCKER.IO=m.corp;Ghcr.IO=n.corp").unwrap();
        let hub: Reference = "alpine".parse().unwrap();
        let got: Vec<String> = m.for_reference(&hub).map(ToString::to_string).collect();
        assert_eq!(got, ["m.corp"]);
        let ghcr: Reference = "ghcr.io/a/b:1".parse().unwrap();
        let got: Vec<String> = m.for_reference(&ghcr).map(ToString::to_string).collect();
        assert_eq!(got, ["n.corp"]);
    }

    #[test]
    fn bad_entries_are_named() {
        assert_eq!(
            parse_list("docker.io").unwrap_err(),
            SettingProblem::mirror_entry("docker.io")
        );
        assert!(matches!(
            parse_list("docker.io=https://m.corp").unwrap_err(),
            SettingProblem::NotAMirror { .. }
        ));
        assert!(matches!(
            parse_list("docker.io=m.corp/UPPER").unwrap_err(),
            SettingProblem::NotAMirror { .. }
        ));
        assert!(matches!(
            parse_list("ghcr.io/x=m.corp").unwrap_err(),
            SettingProblem::NotARegistry { .. }
        ));
        assert_eq!(registry_name("index.docker.io").unwrap(), "docker.io");
        assert_eq!(registry_name("registry-1.docker.io").unwrap(), "docker.io");
    }
}
