"""Recipe: read labelled 2-D slices from any supported source and write them prepared.

    python pipelines/prepare_slices.py configs/nifti_lesions.yaml --out prepared/nifti [--data-dir DIR]

Uses only medgan's public API: load a typed config, read the slices, look at the splits,
write NPZ shards + manifest.csv atomically, and read them back.
"""

from __future__ import annotations

import argparse
import sys

from medgan.config import load_config
from medgan.data.inspect import render_text, summarize
from medgan.data.prepare import load_prepared, write_prepared
from medgan.data.sources import load_source
from medgan.errors import MedganError
from medgan.paths import resolve_data_dir


def main(argv: list[str] | None = None) -> int:
    """Prepare the slices a config describes; returns an exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--out", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        data_dir = resolve_data_dir(args.data_dir)
        slices = load_source(cfg.data, data_dir)  # SliceSet: images (N, C, H, W) in [-1, 1] + manifest
        print(render_text(summarize(slices), args.config))
        train = slices.split("train")
        print(
            f"train split: {len(train)} slices, labels {train.manifest['label_name'].value_counts().to_dict()}"
        )
        write_prepared(slices, args.out, cfg, overwrite=True)
        again = load_prepared(args.out)
        assert (again.images == slices.images).all()
        print(f"wrote {len(again)} slices to {args.out}")
    except MedganError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
