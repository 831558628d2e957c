//! The help texts of the `forge-oci` commands.

pub const MAIN_USAGE: &str = "\
forge-oci: pull WebAssembly plugins and other single-blob OCI artifacts into a shared cache

usage:
  forge-oci pull REF [-o FILE | -o -] [OPTIONS]   fetch into the cache; print the path or copy it
  forge-oci pull REF REF... [-j N] [OPTIONS]      fetch several at once; print their paths in order
  forge-oci resolve REF [--json] [OPTIONS]        print the digest REF resolves to
  forge-oci inspect REF [OPTIONS]                 print the manifest (and index) as JSON
  forge-oci vendor --to DIR REF... [OPTIONS]      write REFs into an OCI image layout at DIR
  forge-oci cache path|ls|prune|verify|clear      look after the cache

Run `forge-oci COMMAND --help` for a command's options.";

pub const REF_OPTIONS: &str = "
options:
      --offline            use only the cache (also FORGE_OFFLINE=1, CARGO_NET_OFFLINE=true)
      --insecure HOST      reach HOST[:PORT] over plain HTTP (repeatable; also FORGE_OCI_INSECURE_HOSTS)
      --cache-dir DIR      the cache root (default: $FORGE_CACHE_DIR/openapi-forge/plugins)
      --mirror REG=MIRROR  ask MIRROR (HOST[:PORT][/PREFIX]) before registry REG (repeatable; FORGE_OCI_MIRRORS)
      --layout DIR         read the OCI image layout DIR first, also offline (repeatable; FORGE_OCI_LAYOUTS)
      --platform OS/ARCH   pick this platform from an index (repeatable, best first; default wasip2/wasm …)
      --media-type TYPE    accept only this layer media type (repeatable, best first; no fallback)
      --layer TITLE|DIGEST take the layer with this org.opencontainers.image.title or sha256: digest
      --tag-policy POLICY  cache-first (default), revalidate, or max-age=DURATION (30s, 10m, 12h, 7d)
      --json               print the result as one JSON object
  -q, --quiet              no progress bar, no notices on stderr
  -h, --help               print this help";

pub const PULL_USAGE: &str = "\
usage: forge-oci pull REF [-o FILE | -o -] [OPTIONS]
       forge-oci pull REF REF... [-j N] [OPTIONS]

Pull REF into the cache and print the cached file's path, or write it to FILE as
it downloads (`-`: standard output). Several REFs are pulled at once: a `REF PATH`
line each (--json: an array), every failure reported, exit 1 if any failed; `-o`
takes one REF. A progress bar is drawn on a terminal for one download, as wide as
COLUMNS (default 80); with TERM=dumb, a line at its start and end.

  -o, --output FILE        write the artifact to FILE (`-`: standard output)
  -j, --jobs N             pull at most N references at once (1 to 64; default 4)";

pub const RESOLVE_USAGE: &str = "\
usage: forge-oci resolve REF [--json] [OPTIONS]

Print the digest REF resolves to (pin it as NAME@DIGEST). A tag is asked of the
registry; --json adds the layer's digest, media type, size, title and why it is the
one. Nothing is downloaded but manifests.";

pub const INSPECT_USAGE: &str = "\
usage: forge-oci inspect REF [OPTIONS]

Print, as JSON, the manifest REF leads to, the index it was selected from, and
`layer`: the layer a pull with the same options would take and why, or why none.";

pub const VENDOR_USAGE: &str = "\
usage: forge-oci vendor --to DIR REF... [OPTIONS]

Write each REF (manifests, config, layers) into the OCI image layout at DIR, named
by its full reference in index.json; a REF vendored before is replaced. Commit DIR,
then build with FORGE_OCI_LAYOUTS=DIR and CARGO_NET_OFFLINE=true.

      --to DIR             the layout directory";

pub const CACHE_USAGE: &str = "\
usage: forge-oci cache COMMAND [--cache-dir DIR]

commands:
  path                     print the cache root
  ls [--json] [--platform OS/ARCH] [--media-type TYPE]
                           list cached references: digest, layer, size, when resolved (UTC);
                           the layer is chosen as pull chooses it, with these options
  prune [--older-than D]   remove unreferenced blobs and leftovers (and references older than D: 30d, 12h)
  verify                   re-hash every blob; remove corrupt ones
  clear                    remove everything

options:
      --cache-dir DIR      the cache root (default: $FORGE_CACHE_DIR/openapi-forge/plugins)
  -h, --help               print this help";
