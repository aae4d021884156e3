#!/usr/bin/env python3
"""Read tile records back and draw a contact sheet: one row of sample tiles per source."""
from vae import cli, records


def main(argv):
    p = cli.parser(__doc__)
    p.add_argument("--data", nargs="+", required=True, help="record files or glob patterns")
    p.add_argument("--out", help="contact sheet PNG to write")
    p.add_argument("--show", action="store_true", help="open the contact sheet in a window")
    p.add_argument("--per-row", type=int, default=8, help="sample tiles per source")
    args = p.parse_args(argv)
    if not args.out and not args.show:
        raise cli.UserError("give --out FILE.png, --show, or both")
    files = records.find_files(args.data)  # before TensorFlow's start-up: a wrong --data fails at once
    cli.quiet_tensorflow()
    from vae import contact_sheet, images
    size = records.tile_size(files)
    samples, counts = {}, {}
    for batch in records.iterate(files, size):
        for image, source in zip(batch["image"], batch["source"]):
            source = source.decode()
            counts[source] = counts.get(source, 0) + 1
            if len(samples.setdefault(source, [])) < args.per_row:
                samples[source].append(images.to_uint8(image))
    print(f"tile size {size[0]}x{size[1]}, {sum(counts.values())} tiles in {len(files)} file(s)")
    for source in sorted(counts):
        print(f"  {source}: {counts[source]}")
    sheet = contact_sheet.contact_sheet(samples, counts, args.per_row)
    if args.out:
        with cli.atomic_path(args.out, suffix=".png") as tmp:
            images.save_png(tmp, sheet)
        print(f"wrote {args.out}")
    if args.show:
        import matplotlib.pyplot as plt  # only with --show: a window needs a display
        plt.figure(figsize=(sheet.shape[1] / 100, sheet.shape[0] / 100))
        plt.imshow(sheet)
        plt.axis("off")
        plt.show()
    return 0


if __name__ == "__main__":
    cli.run(main)
