"""`study data ...`: generate the embedded default data sets (training videos, DAVIS, JHMDB and VIP layouts)."""

from __future__ import annotations

import typer

from study.cli_options import opt

data_app = typer.Typer(help="Generate the embedded default data sets.", no_args_is_help=True, rich_markup_mode=None)


@data_app.command("synth")
def data_synth(out: str = opt(..., "folder to write mp4 files into", "DIR"), videos: int = opt(64, "videos", "N"),
               frames: int = opt(40, "frames per video", "N"), size: int = opt(96, "frame size", "PX"),
               seed: int = opt(0, "random seed", "N")) -> None:
    """Generated training videos: textured objects moving over a moving textured background, as mp4.

    \b
    Example: study data synth --out videos/ --videos 8
    """
    from study.data.synth_videos import write_video_set

    write_video_set(out, n_videos=videos, n_frames=frames, size=size, seed=seed)


@data_app.command("synth-davis")
def data_synth_davis(out: str = opt(..., "folder to write the DAVIS-2017 layout into", "DIR"),
                     sequences: int = opt(4, "sequences", "N"), frames: int = opt(30, "frames per sequence", "N"),
                     short_side: int = opt(480, "short side in pixels", "PX"),
                     seed: int = opt(0, "random seed", "N")) -> None:
    """Generated sequences in the DAVIS-2017 layout with exact palette-PNG masks.

    \b
    Example: study data synth-davis --out davis/ --sequences 2
    """
    from study.data.synth_eval import write_davis

    write_davis(out, n_sequences=sequences, n_frames=frames, short_side=short_side, seed=seed)


@data_app.command("synth-jhmdb")
def data_synth_jhmdb(out: str = opt(..., "folder to write the JHMDB layout into", "DIR"),
                     videos: int = opt(4, "videos", "N"), frames: int = opt(20, "frames per video", "N"),
                     seed: int = opt(0, "random seed", "N")) -> None:
    """Generated videos in the JHMDB layout (Rename_Images + joint_positions.mat).

    \b
    Example: study data synth-jhmdb --out jhmdb/
    """
    from study.data.synth_eval import write_jhmdb

    write_jhmdb(out, n_videos=videos, n_frames=frames, seed=seed)


@data_app.command("synth-vip")
def data_synth_vip(out: str = opt(..., "folder to write the VIP layout into", "DIR"),
                   videos: int = opt(4, "videos", "N"), frames: int = opt(20, "frames per video", "N"),
                   seed: int = opt(0, "random seed", "N")) -> None:
    """Generated videos in the VIP layout (VIP_Fine/Images + Annotations/Category_ids).

    \b
    Example: study data synth-vip --out vip/
    """
    from study.data.synth_eval import write_vip

    write_vip(out, n_videos=videos, n_frames=frames, seed=seed)
