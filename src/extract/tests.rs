//! Extraction rules and limits on tars built here.
#![allow(clippy::unwrap_used)]

use super::*;

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const TGZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// An in-memory staged file.
#[derive(Debug, Default)]
struct Mem(Vec<u8>);

impl Stage for Mem {
    type Error = std::convert::Infallible;

    fn write_all(&mut self, buf: &[u8]) -> Result<(), Self::Error> {
        self.0.extend_from_slice(buf);
        Ok(())
    }
}

enum Item<'a> {
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    /// A raw name written into the header bytes, bypassing the builder's checks.
    RawFile(&'a [u8], &'a [u8]),
}

fn tar(items: &[Item<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for item in items {
        let mut h = tar::Header::new_gnu();
        match item {
            Item::File(path, data) => {
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut h, path, *data).unwrap();
            }
            Item::Symlink(path, target) => {
                h.set_size(0);
                h.set_entry_type(tar::EntryType::Symlink);
                b.append_link(&mut h, path, target).unwrap();
            }
            Item::RawFile(name, data) => {
                h.as_old_mut().name[..name.len()].copy_from_slice(name);
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn run(
    layer: &[u8],
    media_type: &str,
    rule: &Rule,
) -> Result<(String, Vec<u8>), Failed<std::convert::Infallible>> {
    run_limited(layer, media_type, rule, 1 << 30)
}

fn run_limited(
    layer: &[u8],
    media_type: &str,
    rule: &Rule,
    max: u64,
) -> Result<(String, Vec<u8>), Failed<std::convert::Infallible>> {
    extract(layer, media_type, rule, max, &mut || Ok(Mem::default())).map(|(n, m)| (n, m.0))
}

fn refusal(r: Result<(String, Vec<u8>), Failed<std::convert::Infallible>>) -> ExtractError {
    match r {
        Err(Failed::Layer(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn istio_takes_plugin_wasm_over_other_modules() {
    let layer = tar(&[
        Item::File("other.wasm", b"other"),
        Item::File("./plugin.wasm", b"plugin"),
    ]);
    let (name, bytes) = run(&gz(&layer), TGZ, &Rule::Istio).unwrap();
    assert_eq!(
        (name.as_str(), bytes.as_slice()),
        ("plugin.wasm", &b"plugin"[..])
    );
    let (_, bytes) = run(&layer, TAR, &Rule::Istio).unwrap();
    assert_eq!(bytes, b"plugin");
}

#[test]
fn without_plugin_wasm_the_only_module_is_taken_and_two_are_refused() {
    let one = tar(&[
        Item::File("etc/x.txt", b"x"),
        Item::File("filter.wasm", b"f"),
    ]);
    assert_eq!(run(&one, TAR, &Rule::Istio).unwrap().1, b"f");
    let two = tar(&[Item::File("a.wasm", b"a"), Item::File("b/b.wasm", b"b")]);
    let e = refusal(run(&two, TAR, &Rule::Istio));
    assert!(
        matches!(&e, ExtractError::SeveralModules { paths } if paths.len() == 2),
        "{e}"
    );
    assert!(e.to_string().contains("a.wasm") && e.to_string().contains("b/b.wasm"));
    let none = tar(&[Item::File("readme", b"r")]);
    assert!(matches!(
        refusal(run(&none, TAR, &Rule::Istio)),
        ExtractError::NoModule { .. }
    ));
}

#[test]
fn docker_takes_the_entrypoint_and_says_when_it_is_missing() {
    let layer = tar(&[
        Item::File("a.wasm", b"a"),
        Item::File("app/main.wasm", b"main"),
    ]);
    let rule = Rule::Entrypoint(Some("/app/main.wasm".into()));
    assert_eq!(
        run(&layer, TAR, &rule).unwrap(),
        ("app/main.wasm".into(), b"main".to_vec())
    );
    let missing = Rule::Entrypoint(Some("/nope.wasm".into()));
    let e = refusal(run(&layer, TAR, &missing));
    assert!(matches!(e, ExtractError::EntrypointMissing { .. }), "{e}");
    let e = refusal(run(&layer, TAR, &Rule::Entrypoint(None)));
    assert!(matches!(e, ExtractError::SeveralModules { .. }), "{e}");
}

#[test]
fn the_rule_comes_from_the_image_config() {
    let docker = br#"{"os":"wasi","architecture":"wasm","config":{"Entrypoint":["/hello.wasm"]}}"#;
    assert_eq!(
        Rule::for_config(docker).unwrap(),
        Rule::Entrypoint(Some("/hello.wasm".into()))
    );
    let relative = br#"{"os":"wasip1","architecture":"wasm","config":{"Entrypoint":["main.wasm"],"WorkingDir":"/app/"}}"#;
    assert_eq!(
        Rule::for_config(relative).unwrap(),
        Rule::Entrypoint(Some("/app/main.wasm".into()))
    );
    let istio = br#"{"os":"linux","architecture":"amd64","config":{}}"#;
    assert_eq!(Rule::for_config(istio).unwrap(), Rule::Istio);
    assert!(matches!(
        Rule::for_config(b"nope"),
        Err(ExtractError::BadConfig { .. })
    ));
}

#[test]
fn a_gzip_bomb_stops_at_the_limit() {
    let big = vec![0u8; 8 << 20];
    let layer = gz(&tar(&[Item::File("plugin.wasm", &big)]));
    assert!(layer.len() < 64 << 10, "a bomb: small compressed");
    let e = refusal(run_limited(&layer, TGZ, &Rule::Istio, 1 << 20));
    assert!(
        matches!(e, ExtractError::TooLarge { limit } if limit == 1 << 20),
        "{e}"
    );
}

#[test]
fn dot_dot_paths_are_refused() {
    let layer = tar(&[Item::RawFile(b"../../etc/plugin.wasm", b"evil")]);
    let e = refusal(run(&layer, TAR, &Rule::Istio));
    assert!(
        matches!(&e, ExtractError::UnsafePath { path } if path.contains("..")),
        "{e}"
    );
}

#[test]
fn a_link_is_never_the_module() {
    let layer = tar(&[Item::Symlink("plugin.wasm", "/etc/passwd")]);
    let e = refusal(run(&layer, TAR, &Rule::Istio));
    assert!(
        matches!(&e, ExtractError::Link { path } if path == "plugin.wasm"),
        "{e}"
    );
}

#[test]
fn a_hard_link_is_never_the_module_either() {
    let mut b = tar::Builder::new(Vec::new());
    let mut real = tar::Header::new_gnu();
    real.set_size(1);
    b.append_data(&mut real, "real.txt", &b"x"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    b.append_link(&mut h, "plugin.wasm", "real.txt").unwrap();
    let e = refusal(run(&b.into_inner().unwrap(), TAR, &Rule::Istio));
    assert!(
        matches!(&e, ExtractError::Link { path } if path == "plugin.wasm"),
        "{e}"
    );
}

#[test]
fn too_many_entries_are_refused() {
    let names: Vec<String> = (0..=MAX_TAR_ENTRIES).map(|i| format!("f{i}")).collect();
    let items: Vec<Item<'_>> = names.iter().map(|n| Item::File(n, b"")).collect();
    let layer = gz(&tar(&items));
    let e = refusal(run(&layer, TGZ, &Rule::Istio));
    assert!(matches!(e, ExtractError::TooManyEntries { .. }), "{e}");
}

#[test]
fn zstd_and_garbage_are_typed_errors() {
    let e = refusal(run(
        b"x",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        &Rule::Istio,
    ));
    assert!(
        matches!(e, ExtractError::UnsupportedCompression { .. }),
        "{e}"
    );
    let e = refusal(run(b"not gzip at all", TGZ, &Rule::Istio));
    assert!(matches!(e, ExtractError::Corrupt(_)), "{e}");
}

/// A GNU sparse `plugin.wasm` ("\0asm" then 4 bytes of hole), then `other.wasm`.
fn gnu_sparse_plugin_then_other() -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path("plugin.wasm").unwrap();
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_size(4);
    let g = h.as_gnu_mut().unwrap();
    g.sparse[0].offset = *b"00000000000\0";
    g.sparse[0].numbytes = *b"00000000004\0";
    g.sparse[1].offset = *b"00000000010\0";
    g.sparse[1].numbytes = *b"00000000000\0";
    g.realsize = *b"00000000010\0";
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    let mut data = b"\0asm".to_vec();
    data.resize(512, 0);
    out.extend_from_slice(&data);
    out.extend(tar(&[Item::File("other.wasm", b"OTHER")]));
    out
}

#[test]
fn a_gnu_sparse_plugin_wasm_is_read_expanded_not_passed_over_for_another_module() {
    let (name, bytes) = run(&gnu_sparse_plugin_then_other(), TAR, &Rule::Istio).unwrap();
    assert_eq!(name, "plugin.wasm");
    assert_eq!(bytes, b"\0asm\0\0\0\0");
}

#[test]
fn a_pax_sparse_module_is_refused_not_handed_over_as_its_hole_map() {
    // What GNU tar --sparse --format=posix writes (sparse format 1.0): the data
    // starts with the map of holes, which `tar` does not expand.
    let mut data = b"1\n0\n4\n".to_vec();
    data.resize(512, 0);
    data.extend_from_slice(b"\0asm");
    let mut b = tar::Builder::new(Vec::new());
    let records: [(&str, &[u8]); 4] = [
        ("GNU.sparse.major", b"1"),
        ("GNU.sparse.minor", b"0"),
        ("GNU.sparse.name", b"plugin.wasm"),
        ("GNU.sparse.realsize", b"8"),
    ];
    b.append_pax_extensions(records).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "GNUSparseFile.0/plugin.wasm", &data[..])
        .unwrap();
    let e = refusal(run(&b.into_inner().unwrap(), TAR, &Rule::Istio));
    assert!(matches!(e, ExtractError::SparseFile { .. }), "{e}");
}

#[test]
fn a_directory_named_plugin_wasm_is_refused_not_replaced_by_another_module() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o755);
    b.append_data(&mut h, "plugin.wasm/", &[][..]).unwrap();
    let mut layer = b.into_inner().unwrap();
    layer.truncate(512); // drop the end-of-archive blocks
    layer.extend(tar(&[Item::File("other.wasm", b"OTHER")]));
    let e = refusal(run(&layer, TAR, &Rule::Istio));
    assert!(
        matches!(&e, ExtractError::NotAFile { path } if path == "plugin.wasm"),
        "{e}"
    );
}

#[test]
fn istio_takes_the_first_plugin_wasm_of_one_path_as_istio_does() {
    // Istio's fetcher returns the first entry named plugin.wasm; a Docker
    // wasi/wasm runtime unpacks the layer, so the last entry of a path wins there.
    let layer = tar(&[
        Item::File("plugin.wasm", b"first"),
        Item::File("./plugin.wasm", b"second"),
    ]);
    assert_eq!(run(&layer, TAR, &Rule::Istio).unwrap().1, b"first");
    let layer = tar(&[
        Item::File("app.wasm", b"first"),
        Item::File("./app.wasm", b"second"),
    ]);
    let rule = Rule::Entrypoint(Some("/app.wasm".into()));
    assert_eq!(run(&layer, TAR, &rule).unwrap().1, b"second");
}

#[test]
fn headers_tar_keeps_in_memory_are_bounded_apart_from_the_data() {
    // A PAX record tar would read whole into memory: a few hundred kilobytes
    // of gzip could make it hold max_extracted_size (512 MiB by default).
    let big = vec![b'a'; (MAX_HEADER_BYTES + 1) as usize];
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("comment", &big[..])]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(4);
    h.set_mode(0o644);
    b.append_data(&mut h, "plugin.wasm", &b"\0asm"[..]).unwrap();
    let layer = gz(&b.into_inner().unwrap());
    let e = refusal(run(&layer, TGZ, &Rule::Istio));
    assert!(
        matches!(e, ExtractError::HeadersTooLarge { limit } if limit == MAX_HEADER_BYTES),
        "{e}"
    );
    // The data of an entry is not a header: a large file before the module is read through.
    let layer = gz(&tar(&[
        Item::File("big.bin", &big),
        Item::File("plugin.wasm", b"\0asm"),
    ]));
    assert_eq!(run(&layer, TGZ, &Rule::Istio).unwrap().1, b"\0asm");
}

#[test]
fn a_runwasi_entrypoint_naming_a_function_names_the_file_before_the_hash() {
    let config =
        br#"{"os":"wasip1","architecture":"wasm","config":{"Entrypoint":["/app/app.wasm#entry"]}}"#;
    let rule = Rule::for_config(config).unwrap();
    let layer = tar(&[
        Item::File("app/app.wasm", b"\0asm app"),
        Item::File("other.wasm", b"\0asm other"),
    ]);
    let (name, bytes) = run(&layer, TAR, &rule).unwrap();
    assert_eq!(
        (name.as_str(), bytes.as_slice()),
        ("app/app.wasm", &b"\0asm app"[..])
    );
}

#[test]
fn without_an_entrypoint_the_command_names_the_module_as_docker_runs_it() {
    // Docker runs Entrypoint + Cmd: with no Entrypoint, Cmd's first word is the
    // program. Here it has no .wasm suffix, so "the only *.wasm" is another file.
    let config =
        br#"{"os":"wasip1","architecture":"wasm","config":{"Cmd":["/app"],"WorkingDir":"/"}}"#;
    let rule = Rule::for_config(config).unwrap();
    let layer = tar(&[
        Item::File("app", b"\0asm app"),
        Item::File("lib/helper.wasm", b"\0asm helper"),
    ]);
    let (name, bytes) = run(&layer, TAR, &rule).unwrap();
    assert_eq!(
        (name.as_str(), bytes.as_slice()),
        ("app", &b"\0asm app"[..])
    );
    let empty =
        br#"{"os":"wasip1","architecture":"wasm","config":{"Entrypoint":[],"Cmd":["/app"]}}"#;
    assert_eq!(
        Rule::for_config(empty).unwrap(),
        Rule::Entrypoint(Some("/app".into()))
    );
}

#[test]
fn a_link_beside_plugin_wasm_is_no_reason_to_refuse_but_is_never_the_only_module() {
    let layer = tar(&[
        Item::File("plugin.wasm", b"\0asm plugin"),
        Item::Symlink("lib/alias.wasm", "/plugin.wasm"),
    ]);
    assert_eq!(run(&layer, TAR, &Rule::Istio).unwrap().1, b"\0asm plugin");
    let layer = tar(&[Item::Symlink("lib/only.wasm", "/etc/passwd")]);
    let e = refusal(run(&layer, TAR, &Rule::Istio));
    assert!(
        matches!(&e, ExtractError::Link { path } if path == "lib/only.wasm"),
        "{e}"
    );
    let layer = tar(&[
        Item::File("only.wasm", b"\0asm file"),
        Item::Symlink("only.wasm", "/etc/passwd"),
    ]);
    let e = refusal(run(&layer, TAR, &Rule::Entrypoint(None)));
    assert!(matches!(&e, ExtractError::Link { .. }), "{e}");
}

#[test]
fn plugin_wasm_in_a_directory_whose_name_is_not_utf8_is_still_plugin_wasm() {
    // Istio compares the base name only: it loads this plugin.wasm, so a pull
    // must not pass it over for the only other *.wasm.
    let layer = tar(&[
        Item::RawFile(b"\xff\xfe/plugin.wasm", b"\0asm plugin"),
        Item::File("other.wasm", b"\0asm other"),
    ]);
    let (name, bytes) = run(&layer, TAR, &Rule::Istio).unwrap();
    assert_eq!(bytes, b"\0asm plugin", "took {name}");
    assert_eq!(name, "\\xff\\xfe/plugin.wasm");
}
