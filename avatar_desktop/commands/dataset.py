"""`avatar-desktop dataset synth | videos | assets`: build training data (see docs/DATA.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from avatar_desktop.commands.registry import command
from avatar_desktop.files import prepare_output_folder


def _add(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dataset_command", required=True)
    synth = sub.add_parser("synth", help="synthetic talking avatars driven by synthesized speech")
    synth.add_argument("--out", type=Path, required=True, help="output folder (new, or an unfinished run to resume)")
    synth.add_argument("--identities", type=int, required=True, help="number of characters")
    synth.add_argument("--clips-per-identity", type=int, default=3)
    synth.add_argument("--seconds", type=float, default=8.0, help="length of each clip")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--size", type=int, default=256, help="frame width and height in pixels")
    synth.add_argument("--voices", default=None,
                       help="comma-separated voices to draw from, 'engine:voice' or bare espeak-ng names, e.g. "
                            "en-us+f3,flite:kal,festival:kal_diphone (default: a pool of espeak-ng voices)")
    synth.add_argument("--heldout-voices", default=None,
                       help="comma-separated voices for held-out clips only (never in training clips), e.g. "
                            "flite:slt,festival:cmu_us_slt_arctic_hts (default: the last 10%% of --voices)")
    synth.add_argument("--workers", type=int, default=2, help="processes rendering clips in parallel")
    synth.add_argument("--no-progress", action="store_true", help="no progress bar")

    videos = sub.add_parser("videos", help="clips from real talking-head videos")
    videos.add_argument("--in", dest="source", type=Path, required=True, help="folder of videos (or one video)")
    videos.add_argument("--out", type=Path, required=True, help="output folder (new, or a run to resume)")
    videos.add_argument("--size", type=int, default=256, help="crop width and height in pixels")
    videos.add_argument("--seconds", type=float, default=8.0, help="longest clip; longer videos are split")
    videos.add_argument("--no-progress", action="store_true", help="no progress bar")

    assets = sub.add_parser("assets", help="the app's default portraits and sample speech")
    assets.add_argument("--out", type=Path, default=Path("assets"))
    assets.add_argument("--seed", type=int, default=7)


def _run(args: argparse.Namespace) -> int:
    prepare_output_folder(args.out, "--out")
    if args.dataset_command == "synth":
        from avatar_desktop.data.synth_dataset import SynthConfig, build_synthetic

        def names(text: str | None) -> tuple[str, ...] | None:
            return tuple(v.strip() for v in text.split(",") if v.strip()) if text else None

        config = SynthConfig(identities=args.identities, clips_per_identity=args.clips_per_identity,
                             seconds=args.seconds, seed=args.seed, size=args.size, voices=names(args.voices),
                             heldout_voices=names(args.heldout_voices))
        manifest = build_synthetic(args.out, config, workers=args.workers, progress=not args.no_progress)
        heldout = sum(clip["split"] == "heldout" for clip in manifest["clips"])
        print(f"{len(manifest['clips'])} clips ({heldout} held out) in {args.out}")
    elif args.dataset_command == "videos":
        from avatar_desktop.data.videos import VideoConfig, build_from_videos

        manifest = build_from_videos(args.source, args.out, VideoConfig(size=args.size, seconds=args.seconds),
                                     progress=not args.no_progress)
        print(f"{len(manifest['clips'])} clips from {len(manifest['videos'])} video(s) in {args.out}")
    else:
        from avatar_desktop.data.synth_dataset import write_assets

        for path in write_assets(args.out, seed=args.seed):
            print(path)
    return 0


command("dataset", "Build training data: synthetic talking avatars or clips from real videos")((_add, _run))
