"""Animations: the fixed-noise grids across epochs (``timeline.gif``, ``timeline.mp4``), and any frames.

The GIF is the tutorial's ``animation.ArtistAnimation`` of ``img_list``, written to a file with Pillow.
The MP4 needs an ffmpeg binary, which the optional ``imageio-ffmpeg`` package ships
(``pip install ganforge[video]``); without it the MP4 is skipped and the GIF is still written.
"""
from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ganforge.reporting.rundata import Grid
from ganforge.storage import atomic_write_bytes

CAPTION_HEIGHT = 16


def captioned(path: Path, caption: str) -> Image.Image:
    """A grid with its epoch written in a strip above it, so a paused frame says when it is from."""
    with Image.open(path) as img:
        grid = img.convert("RGB")
    frame = Image.new("RGB", (grid.width, grid.height + CAPTION_HEIGHT), "white")
    frame.paste(grid, (0, CAPTION_HEIGHT))
    ImageDraw.Draw(frame).text((4, 2), caption, fill="black", font=ImageFont.load_default())
    return frame


def write_gif(frames: list[Image.Image], path: Path, frame_ms: int = 500, hold_last_ms: int = 2000) -> Path:
    """An endlessly looping GIF, one frame per image; the last frame is held so the end result shows."""
    if not frames:
        raise ValueError("write_gif needs at least one frame")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    durations = [frame_ms] * len(frames)
    durations[-1] = max(frame_ms, hold_last_ms)
    # Pillow merges identical consecutive frames into one; the timeline's captions keep its frames
    # distinct, so it has one frame per epoch even when the model stops changing.
    # Encoded in memory and renamed into place, as every file in a run is: the report never shows half a GIF.
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0,
                   disposal=1)
    atomic_write_bytes(path, buf.getvalue())
    return path


def ffmpeg_available() -> bool:
    try:
        import imageio_ffmpeg
        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return False
    return True


def write_mp4(frames: list[Image.Image], path: Path, fps: float = 2.0) -> Path | None:
    """An H.264 MP4 of the frames, or None when no ffmpeg binary is installed."""
    if not frames or not ffmpeg_available():
        return None
    import imageio_ffmpeg

    # H.264 in yuv420p needs even sides; pad with white rather than scaling the pixels.
    w, h = frames[0].width + frames[0].width % 2, frames[0].height + frames[0].height % 2
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = imageio_ffmpeg.write_frames(str(tmp), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                         macro_block_size=1, ffmpeg_log_level="error",
                                         output_params=["-movflags", "+faststart"])
    writer.send(None)  # start the generator
    try:
        for frame in frames:
            padded = Image.new("RGB", (w, h), "white")
            padded.paste(frame.convert("RGB"), (0, 0))
            writer.send(padded.tobytes())
    finally:
        writer.close()
    tmp.replace(path)
    return path


def write_timeline(run_dir: Path, grids: list[Grid], video: bool = True) -> list[Path]:
    """``timeline.gif`` (and ``timeline.mp4`` when ffmpeg is there) of ``grids``, one frame each."""
    if not grids:
        return []
    frames = [captioned(g.path, g.label) for g in grids]
    written = [write_gif(frames, Path(run_dir) / "timeline.gif")]
    if video:
        mp4 = write_mp4(frames, Path(run_dir) / "timeline.mp4")
        if mp4:
            written.append(mp4)
    return written
