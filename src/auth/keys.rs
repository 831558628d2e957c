//! Which key of a credential file applies to a repository: podman's rule, then
//! docker's, and never the order of a hash map (see `credentials.rs`).

use std::collections::BTreeMap;

/// Docker Hub's key in docker's config files.
pub(super) const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

pub(super) fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// The key of `map` that applies to `repository` of `registry` (an empty
/// `repository`: to the registry as a whole), in this order:
/// 1. `registry/repository`, then each parent namespace, longest first, then
///    `registry` itself: exact keys, as podman writes them;
/// 2. for Docker Hub, `https://index.docker.io/v1/`, as docker writes it;
/// 3. keys naming the registry's host with a scheme and any path
///    (`https://ghcr.io/v2/`), or a Docker Hub alias: the first in byte order.
///
/// A key without a scheme that has a path is a namespace: it matches in step 1
/// or not at all.
pub(super) fn find_key<'m, V>(
    map: &'m BTreeMap<String, V>,
    registry: &str,
    repository: &str,
) -> Option<(&'m str, &'m V)> {
    let exact = scoped_keys(registry, repository)
        .into_iter()
        .chain(is_docker_hub(registry).then(|| DOCKER_HUB_KEY.to_owned()))
        .find_map(|k| map.get_key_value(&k));
    exact
        .or_else(|| {
            map.iter().find(|(key, _)| {
                key_host(key).is_some_and(|host| {
                    host == registry || (is_docker_hub(host) && is_docker_hub(registry))
                })
            })
        })
        .map(|(k, v)| (k.as_str(), v))
}

/// `registry/a/b/c`, `registry/a/b`, `registry/a`, `registry` for repository `a/b/c`.
pub(super) fn scoped_keys(registry: &str, repository: &str) -> Vec<String> {
    let mut keys = vec![registry.to_owned()];
    let mut name = registry.to_owned();
    for part in repository.split('/').filter(|p| !p.is_empty()) {
        name.push('/');
        name.push_str(part);
        keys.push(name.clone());
    }
    keys.reverse();
    keys
}

/// The host a key names as a whole registry: the key itself when it has no `/`,
/// the part before the path when it has an `http://` or `https://` scheme (docker
/// once wrote such keys), else `None` (a namespace key).
fn key_host(key: &str) -> Option<&str> {
    match key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
    {
        Some(rest) => rest.split('/').next(),
        None => (!key.contains('/')).then_some(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key [`find_key`] picks among `keys` for `repository` of `registry`.
    fn pick<'a>(keys: &[&'a str], registry: &str, repository: &str) -> Option<&'a str> {
        let map: BTreeMap<String, &str> = keys.iter().map(|k| ((*k).to_owned(), *k)).collect();
        find_key(&map, registry, repository).map(|(_, v)| *v)
    }

    #[test]
    fn keys_match_as_docker_matches_hosts() {
        assert_eq!(
            pick(&["https://index.docker.io/v1/"], "docker.io", "library/a"),
            Some("https://index.docker.io/v1/")
        );
        assert_eq!(pick(&["ghcr.io"], "ghcr.io", "o/a"), Some("ghcr.io"));
        assert_eq!(
            pick(&["https://ghcr.io/v2/"], "ghcr.io", "o/a"),
            Some("https://ghcr.io/v2/")
        );
        assert_eq!(
            pick(&["localhost:5000"], "localhost:5000", "a"),
            Some("localhost:5000")
        );
        assert_eq!(pick(&["localhost:5000"], "localhost", "a"), None);
        assert_eq!(pick(&["evil.ghcr.io"], "ghcr.io", "a"), None);
        assert_eq!(pick(&["ghcr.io.evil"], "ghcr.io", "a"), None);
    }

    #[test]
    fn keys_match_by_podmans_rule_and_never_by_chance() {
        let keys = [
            "host/team-a",
            "host/team-b",
            "host/team-a/app",
            "host/team-a/sub",
            "host",
            "https://host/v1/",
            "http://host",
        ];
        assert_eq!(pick(&keys, "host", "team-a/app"), Some("host/team-a/app"));
        assert_eq!(pick(&keys, "host", "team-a/other"), Some("host/team-a"));
        assert_eq!(
            pick(&keys, "host", "team-a/sub/app"),
            Some("host/team-a/sub")
        );
        assert_eq!(pick(&keys, "host", "team-b/app"), Some("host/team-b"));
        assert_eq!(pick(&keys, "host", "team-c/app"), Some("host"));
        // A namespace matches whole path components only.
        assert_eq!(pick(&keys, "host", "team-ab/app"), Some("host"));
        // Without the plain host key, the noisy ones, first in byte order.
        let noisy = ["https://host/v1/", "http://host", "host/team-a"];
        assert_eq!(pick(&noisy, "host", "team-c/app"), Some("http://host"));
        // A namespace key never stands for its host.
        assert_eq!(pick(&["host/team-a"], "host", "team-b/app"), None);
        assert_eq!(pick(&["host/team-a"], "host", ""), None);
        // Docker Hub: podman's keys, then docker's, then its aliases.
        let hub = [
            "docker.io/library",
            "https://index.docker.io/v1/",
            "index.docker.io",
            "https://registry-1.docker.io/v2/",
        ];
        assert_eq!(
            pick(&hub, "docker.io", "library/alpine"),
            Some("docker.io/library")
        );
        assert_eq!(
            pick(&hub, "docker.io", "me/plugin"),
            Some("https://index.docker.io/v1/")
        );
        assert_eq!(
            pick(&hub[2..], "docker.io", "me/plugin"),
            Some("https://registry-1.docker.io/v2/")
        );
    }
}
