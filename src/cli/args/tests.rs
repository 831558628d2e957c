//! The argument parser's cases: each option, its errors, and the commands' shapes.

use super::*;

fn args(s: &str) -> Vec<OsString> {
    s.split_whitespace().map(OsString::from).collect()
}

#[test]
fn durations() {
    assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
    assert_eq!(
        parse_duration("7d").unwrap(),
        Duration::from_secs(7 * 86_400)
    );
    assert!(parse_duration("7y").unwrap_err().contains("unknown unit"));
    assert!(parse_duration("soon").is_err());
}

#[test]
fn pull_with_everything() {
    let cmd = parse(args(
        "pull r:1 -o out.wasm --offline --insecure a:5000 --insecure b --platform wasip1/wasm \
         --media-type application/wasm --tag-policy max-age=12h --cache-dir /c -q \
         --layer plugin.wasm",
    ))
    .unwrap();
    let Command::Pull { args, output, .. } = cmd else {
        panic!("{cmd:?}")
    };
    assert_eq!(output, Some(Output::File("out.wasm".into())));
    assert_eq!(args.reference, "r:1");
    assert!(args.offline && args.quiet && !args.json);
    assert_eq!(args.insecure, ["a:5000", "b"]);
    assert_eq!(args.platforms, [Platform::new("wasip1", "wasm")]);
    assert_eq!(
        args.tag_policy,
        Some(TagPolicy::MaxAge(Duration::from_secs(43_200)))
    );
    assert_eq!(args.cache_dir, Some(PathBuf::from("/c")));
    assert_eq!(args.layer, Some(LayerSelector::Title("plugin.wasm".into())));
}

#[test]
fn layer_takes_a_title_or_a_valid_digest() {
    let layer = |s: &str| match parse(args(s)) {
        Ok(Command::Pull { args, .. }) => Ok(args.layer),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e.message),
    };
    let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    assert!(matches!(
        layer(&format!("pull r --layer {d}")),
        Ok(Some(LayerSelector::Digest(_)))
    ));
    assert!(
        layer("pull r --layer sha256:abc")
            .unwrap_err()
            .contains("--layer")
    );
    assert!(
        layer("pull r --layer")
            .unwrap_err()
            .contains("needs a value")
    );
}

#[test]
fn usage_errors_name_the_problem() {
    let msg = |s: &str| parse(args(s)).unwrap_err().message;
    assert_eq!(msg("pull"), "missing REF");
    assert_eq!(msg("pull r --bogus"), "unknown option `--bogus`");
    assert_eq!(msg("pull r -o"), "`-o` needs a value");
    assert!(msg("pull r --platform wasm").contains("OS/ARCH"));
    assert!(msg("pull r --tag-policy sometimes").contains("cache-first"));
    assert!(msg("pull r --json -o -").contains("standard output"));
    assert!(msg("pull r s -o out.wasm").starts_with("`-o` takes one REF"));
    for n in ["0", "65", "99999", "-1", "x"] {
        assert_eq!(
            msg(&format!("pull r s --jobs {n}")),
            "`--jobs` needs a number from 1 to 64"
        );
    }
    assert_eq!(msg("resolve r s"), "unexpected argument `s`");
    assert_eq!(msg("inspect r s t"), "unexpected argument `s`");
    assert_eq!(msg("cache"), "missing cache command");
    assert!(msg("cache verify --json").contains("--json"));
    assert!(msg("cache prune --platform wasip1/wasm").contains("--platform"));
    assert!(msg("cache ls --media-type").contains("needs a value"));
    assert_eq!(msg("frobnicate"), "unknown command `frobnicate`");
    let empty = |v: &[&str]| parse(v.iter().map(OsString::from)).unwrap_err().message;
    for (line, flag) in [
        (&["pull", "r", "--cache-dir", ""][..], "--cache-dir"),
        (&["resolve", "r", "--cache-dir", ""], "--cache-dir"),
        (&["inspect", "--cache-dir", "", "r"], "--cache-dir"),
        (&["pull", "r", "-o", ""], "-o"),
        (&["pull", "r", "--output", ""], "--output"),
        (&["cache", "clear", "--cache-dir", ""], "--cache-dir"),
    ] {
        assert_eq!(
            empty(line),
            format!("`{flag}` needs a path, not an empty string"),
            "{line:?}"
        );
    }
}

#[test]
fn cache_ls_takes_the_selection_of_a_pull() {
    let cmd = parse(args(
        "cache ls --platform wasip1/wasm --media-type application/x-plugin --json",
    ))
    .unwrap();
    let Command::Cache {
        command:
            CacheCommand::Ls {
                json,
                platforms,
                media_types,
            },
        ..
    } = cmd
    else {
        panic!("{cmd:?}")
    };
    assert!(json);
    assert_eq!(platforms, [Platform::new("wasip1", "wasm")]);
    assert_eq!(media_types, ["application/x-plugin"]);
}

#[test]
fn help_everywhere() {
    for s in [
        "--help",
        "pull --help",
        "resolve -h",
        "inspect --help",
        "cache --help",
        "cache ls --help",
    ] {
        assert!(matches!(parse(args(s)).unwrap(), Command::Help(_)), "{s}");
    }
}

#[cfg(unix)]
#[test]
fn bytes_that_are_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let bad = || OsStr::from_bytes(b"caf\xe9").to_owned();
    let parse_with = |before: &[&str], after: &[&str]| {
        let line: Vec<OsString> = before
            .iter()
            .map(OsString::from)
            .chain([bad()])
            .chain(after.iter().map(OsString::from))
            .collect();
        parse(line)
    };
    // Paths are taken as they are.
    let Command::Pull { args, output, .. } = parse_with(&["pull", "r", "-o"], &[]).unwrap() else {
        panic!()
    };
    assert_eq!(output, Some(Output::File(PathBuf::from(bad()))));
    assert_eq!(args.reference, "r");
    let cmd = parse_with(&["pull", "r", "--cache-dir"], &[]).unwrap();
    let Command::Pull { args, .. } = cmd else {
        panic!()
    };
    assert_eq!(args.cache_dir, Some(PathBuf::from(bad())));
    let cmd = parse_with(&["cache", "path", "--cache-dir"], &[]).unwrap();
    let Command::Cache { cache_dir, .. } = cmd else {
        panic!()
    };
    assert_eq!(cache_dir, Some(PathBuf::from(bad())));
    // Anything else is a usage error that names the option.
    let msg = |before: &[&str], after: &[&str]| parse_with(before, after).unwrap_err().message;
    assert_eq!(
        msg(&["pull"], &[]),
        "REF `caf\u{fffd}` is not valid UTF-8 (references are ASCII)"
    );
    for flag in ["--platform", "--media-type", "--insecure", "--tag-policy"] {
        assert_eq!(
            msg(&["resolve", "r", flag], &[]),
            format!("`{flag}` needs UTF-8 text; `caf\u{fffd}` is not")
        );
    }
    assert!(msg(&["cache", "prune", "--older-than"], &[]).starts_with("`--older-than`"));
    assert_eq!(
        msg(&["pull", "r"], &[]),
        "unexpected argument `caf\u{fffd}`"
    );
    assert_eq!(msg(&[], &[]), "unknown command `caf\u{fffd}`");
    assert_eq!(msg(&["cache"], &[]), "unknown cache command `caf\u{fffd}`");
}
