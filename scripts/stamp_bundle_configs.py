"""Record the config.json digest (``extra.config_sha256``) in bundle folders saved before it
existed, e.g. the shipped catalogue. Only config.json is rewritten: the weights, and so their
checksums, stay as they are; each folder is then loaded with verification.

    python scripts/stamp_bundle_configs.py                 # every bundle in sigformer/catalogue
    python scripts/stamp_bundle_configs.py path/to/bundle  # given folders
    python scripts/stamp_bundle_configs.py --check         # exit 1 if one lacks a valid digest
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CATALOGUE = REPO / "sigformer" / "catalogue"


def main(argv: list[str] | None = None) -> int:
    from sigformer.bundle import CONFIG_DIGEST_KEY, Bundle, config_digest, stamp_config
    from sigformer.checkpoint import WEIGHTS_FILE, read_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path,
                        help="bundle folders (default: every bundle in sigformer/catalogue)")
    parser.add_argument("--check", action="store_true",
                        help="only check that each folder holds a valid digest")
    args = parser.parse_args(argv)
    folders = args.folders or sorted(p for p in CATALOGUE.iterdir()
                                     if (p / "config.json").is_file())
    failed = 0
    for folder in folders:
        config = read_config(folder)
        recorded = config.get("extra", {}).get(CONFIG_DIGEST_KEY)
        if args.check:
            ok = recorded == config_digest(config)
            failed += not ok
            print(f"{folder.name}: {'ok' if ok else 'missing or stale digest'}")
            continue
        weights = (folder / WEIGHTS_FILE).read_bytes()
        stamp_config(folder)
        if (folder / WEIGHTS_FILE).read_bytes() != weights:  # cannot happen; say so if it does
            raise SystemExit(f"{folder}: the weights changed while stamping")
        bundle = Bundle.load(folder)  # verifies the weights' checksums and the new digest
        digest = read_config(folder)["extra"][CONFIG_DIGEST_KEY]
        print(f"{folder.name}: {'re-' if recorded else ''}stamped {digest[:12]}, loads as "
              f"{bundle.task}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
