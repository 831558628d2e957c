#!/usr/bin/env python3
"""oras_pull.py REF DIR: pulls the artifact REF into DIR over plain HTTP with
oras-py, the ORAS Python SDK (`pip install oras`).

The Python peer examples/bench.sh times against `forge-oci pull REF -o FILE`.
Written as the SDK's documentation shows it used: an OrasClient for REF's host
with insecure=True (http://), then pull(target=REF, outdir=DIR), which writes each
layer to DIR under its title annotation, or its digest when it has none. The SDK
streams the blob to the file; it does not check the bytes against the digest.
"""

import sys

import oras.client


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: oras_pull.py REF DIR", file=sys.stderr)
        return 2
    ref, outdir = sys.argv[1], sys.argv[2]
    client = oras.client.OrasClient(hostname=ref.split("/", 1)[0], insecure=True)
    files = client.pull(target=ref, outdir=outdir)
    if not files:
        print(f"oras_pull.py {ref}: nothing pulled", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
