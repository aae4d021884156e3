#!/usr/bin/env python3
"""Mean latent code per source into embeddings.json; with --report, pictures of the latent space."""
import os

from vae import cli, records, safety


def main(argv):
    p = cli.parser(__doc__)
    p.add_argument("--data", nargs="+", required=True, help="record files or glob patterns")
    p.add_argument("--models", required=True, help="folder written by export_graphs.py")
    p.add_argument("--report", help="folder for the report pictures")
    p.add_argument("--style", help="style source for the shift sweep (default: the largest image source)")
    p.add_argument("--samples", type=int, default=6, help="tiles per source in the pictures")
    cli.unsafe_models_flag(p)
    args = p.parse_args(argv)
    # Before TensorFlow's start-up, so that a wrong --data or --models fails at once.
    files = records.find_files(args.data)
    found = safety.read_models_folder(args.models)
    cli.quiet_tensorflow()
    cli.raise_on_sigterm()
    from vae import device, export, latent
    device.report()
    size = records.tile_size(files)
    models = export.Models(args.models, unsafe=args.unsafe_models, found=found)
    models.check_tile_size(size)
    sources, codes = latent.encode_sources(models, files, size, keep_codes=True,
                                           samples_per_source=max(args.samples, 16))
    latent.save_embeddings(args.models, sources)
    from vae import measures
    latent.save_tiles(measures.tiles_path(args.models), codes["spread"])
    written = f"{measures.TILES_FILE} (tiles for the texture measure)"
    if models.latent == "spatial":  # the style's own code neighbourhoods, for mogrify_video.py --match
        from vae import match
        banks = match.source_banks(models, codes["spread"])
        match.save_bank(match.bank_path(args.models), banks)
        written += f" and {match.BANK_FILE} ({', '.join(f'{len(b)} code neighbourhoods of {n}' for n, b in banks.items())})"
    print(f"wrote {latent.embeddings_path(args.models)}: {len(sources)} sources, and {written}")
    if args.report:
        from vae import report  # only with --report: it loads matplotlib
        written, table = report.write_report(args.report, models, sources, codes["samples"], codes, args.style)
        for name, count, psnr, distances in table:
            others = ", ".join(f"{o} {d:.2f}" for o, d in distances.items())
            print(f"  {name}: {count} tiles, reconstruction PSNR {psnr:.1f} dB, mean code distance: {others}")
        shown = report.write_projector(os.path.join(args.report, "projector"), codes)
        print(f"wrote {', '.join(written)} to {args.report}")
        print(f"projector of {shown} codes with tile sprites: tensorboard --logdir {os.path.join(args.report, 'projector')}")
    return 0


if __name__ == "__main__":
    cli.run(main)
