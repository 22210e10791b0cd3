"""The transcode pipeline's steps, one function per Airflow task.

Each step reads its inputs from object storage and the job row, writes its
outputs back to storage, and keeps nothing on the local disk afterwards, so
any worker with an empty scratch directory can run any step (CeleryExecutor).
Steps are idempotent: a rerun from the Airflow UI redoes the work and
overwrites what an earlier attempt left.

Storage layout (DESIGN.md §3):
  sources/<job>/<name>                   the upload
  work/<job>/renditions/<name>.mp4       transcoder outputs (staging)
  work/<job>/hls/...                     packaged HLS (staging)
  processed/<job>/hls/master.m3u8 ...    published, master last
  processed/<job>/poster.jpg
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from include.config import Settings, get_settings
from include.errors import InputRejected
from include.jobs import repository
from include.jobs.db import session_scope
from include.jobs.models import new_id
from include.jobs.states import FINAL, JobStatus
from include.media import hls
from include.media.encoders import CPU_ENCODER, choose_video_encoder, encoder_works
from include.media.ffmpeg import FfmpegError, run_ffmpeg
from include.media.ladder import Rendition, parse_tiers, plan_ladder
from include.media.probe import ProbeResult, ffmpeg_version, probe
from include.media.thumbnails import make_poster
from include.media.transcode import audio_settings, unit_command
from include.storage import Storage, get_storage
from security.validation import sanitize_filename

log = logging.getLogger(__name__)

AUDIO = "audio"
# Job progress bands: transcoding is by far the longest step.
PROGRESS_PLANNED = 10.0
PROGRESS_TRANSCODED = 85.0
PROGRESS_SEGMENTED = 92.0
PROGRESS_PUBLISHED = 97.0


class JobCancelled(InputRejected):
    """The job was cancelled; the run must stop without retrying."""


def source_key(job_id: str, filename: str) -> str:
    return f"sources/{job_id}/{sanitize_filename(filename)}"


def work_prefix(job_id: str) -> str:
    return f"work/{job_id}/"


def hls_prefix(job_id: str) -> str:
    return f"processed/{job_id}/hls/"


def master_key(job_id: str) -> str:
    return hls_prefix(job_id) + hls.MASTER


def poster_key(job_id: str) -> str:
    return f"processed/{job_id}/poster.jpg"


@contextmanager
def scratch(job_id: str, step: str, settings: Settings | None = None) -> Iterator[Path]:
    """A private, always-removed working directory for one step."""
    settings = settings or get_settings()
    settings.scratch_dir.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{job_id}-{step}-", dir=settings.scratch_dir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def local_copy(storage: Storage, key: str, workdir: Path) -> Iterator[Path]:
    """A readable local path for ``key``: the file itself on a shared volume, else a download."""
    direct = storage.local_path(key)
    if direct is not None:
        yield direct
        return
    target = workdir / "in" / key.rsplit("/", 1)[-1]
    storage.get_file(key, target)
    yield target


def begin_step(job_id: str) -> repository.Job:
    """Move the job (back) to processing; refuse to work on a cancelled job.

    Reruns from the Airflow UI start at whichever task was cleared, so every
    step, not just the first, has to do this.
    """
    with session_scope() as session:
        job = repository.get_job(session, job_id)
        cancelled = job.status == JobStatus.CANCELLED
        if not cancelled and job.status != JobStatus.PROCESSING:
            job = repository.transition(session, job_id, JobStatus.PROCESSING)
        session.expunge(job)
    if cancelled:
        raise_if_cancelled(job_id)
    return job


def _set_progress(job_id: str, percent: float) -> bool:
    """Store progress; False when the job is no longer processing (e.g. cancelled)."""
    with session_scope() as session:
        stored = repository.set_progress(session, job_id, percent)
        return stored or repository.get_job(session, job_id).status == JobStatus.PROCESSING


def raise_if_cancelled(job_id: str) -> None:
    """Stop work on a cancelled job and remove what it staged."""
    with session_scope() as session:
        cancelled = repository.get_job(session, job_id).status == JobStatus.CANCELLED
    if cancelled:
        get_storage().delete_prefix(work_prefix(job_id))
        raise JobCancelled(f"job {job_id} was cancelled")


# --------------------------------------------------------------------------
# intake for local files (scripts/run_pipeline.py, tests); the API has its own streaming intake
# --------------------------------------------------------------------------


def create_job_from_file(path: Path, *, priority: int = 5, owner_key_id: str | None = None, metadata: dict | None = None) -> str:
    """Store a local file, then create its pending job; returns the job id.

    The object is stored first so that the job is never visible to the
    pickup sensor without its source.
    """
    job_id = new_id()
    key = source_key(job_id, path.name)
    get_storage().put_file(key, path)
    with session_scope() as session:
        repository.create_job(
            session, job_id=job_id, source_name=path.name, source_key=key, priority=priority,
            owner_key_id=owner_key_id, metadata=metadata or {}, source_size=path.stat().st_size,
        )  # fmt: skip
    return job_id


def transcode_run_id(job_id: str, priority: int) -> str:
    """Deterministic run id: a job can never get two runs, and the priority
    travels with the run (the scheduler's weight strategy reads it back)."""
    return f"job_{job_id}_p{priority:02d}"


STALE_QUEUED_S = 600


def claim_jobs(limit: int) -> list[dict[str, Any]]:
    """Claim pending jobs atomically; one TriggerDagRunOperator kwargs dict per job.

    Jobs left ``queued`` for long (a pickup run died between claiming and
    triggering) are offered again; the deterministic run id makes that safe.
    """
    with session_scope() as session:
        claimed = repository.claim_pending(session, limit)
        claimed += repository.stale_queued(session, STALE_QUEUED_S, limit)
        triggers = []
        for job in claimed:
            run_id = transcode_run_id(job.id, job.priority)
            repository.set_airflow_run_id(session, job.id, run_id)
            triggers.append({"trigger_run_id": run_id, "conf": {"job_id": job.id}})
    if triggers:
        log.info("claimed %d job(s): %s", len(triggers), ", ".join(t["conf"]["job_id"] for t in triggers))
    return triggers


# --------------------------------------------------------------------------
# probe → plan
# --------------------------------------------------------------------------


def probe_source(job_id: str) -> dict[str, Any]:
    """Inspect the source; an unusable one raises InputRejected (no retries)."""
    job = begin_step(job_id)
    storage = get_storage()
    with scratch(job_id, "probe") as workdir, local_copy(storage, job.source_key, workdir) as source:
        result = probe(source)
    summary = result.to_dict()
    with session_scope() as session:
        repository.set_probe(session, job_id, summary)
    _set_progress(job_id, 5.0)
    log.info("probed %s: %sx%s %.3f fps %.2f s", job_id, result.video.display_width,
             result.video.display_height, result.video.fps, result.duration_s)  # fmt: skip
    return summary


def source_video_kbps(result: ProbeResult) -> int | None:
    if result.video.bit_rate:
        return result.video.bit_rate // 1000
    if result.bit_rate:
        audio = result.audio.bit_rate if result.audio and result.audio.bit_rate else 0
        return max(1, (result.bit_rate - audio) // 1000)
    return None


def pack_units(renditions: list[Rendition], units: int, source_pixels: int) -> list[list[Rendition]]:
    """Split renditions into at most ``units`` groups of similar cost.

    Cost is pixels to encode plus one decode of the source per group, so
    splitting only pays where there are idle workers to run groups in
    parallel. Longest-processing-time-first keeps the groups balanced.
    """
    units = max(1, min(units, len(renditions)))
    groups: list[list[Rendition]] = [[] for _ in range(units)]
    costs = [0.0] * units
    for rendition in sorted(renditions, key=lambda r: r.width * r.height, reverse=True):
        index = min(range(units), key=lambda i: costs[i])
        if not groups[index]:
            costs[index] += source_pixels * 0.2  # the group's decode
        groups[index].append(rendition)
        costs[index] += rendition.width * rendition.height
    return [sorted(g, key=lambda r: r.height * r.width, reverse=True) for g in groups if g]


def plan_job(job_id: str, settings: Settings | None = None) -> dict[str, Any]:
    """The ladder and how it is split into encode units (and on which encoder)."""
    settings = settings or get_settings()
    begin_step(job_id)
    with session_scope() as session:
        result = ProbeResult.from_dict(repository.get_job(session, job_id).probe)
    video = result.video
    renditions = plan_ladder(
        video.display_width, video.display_height, video.fps, source_video_kbps(result), parse_tiers(settings.ladder_json)
    )
    encoder = choose_video_encoder(settings)
    if encoder == CPU_ENCODER:
        groups = pack_units(renditions, settings.encode_units, video.display_width * video.display_height)
    else:
        # Hardware decoders/encoders run sessions side by side: one unit per rendition.
        groups = [[r] for r in renditions]
    units: list[dict[str, Any]] = []
    for index, group in enumerate(groups):
        units.append({"id": f"{'gpu' if encoder != CPU_ENCODER else 'cpu'}-{index}", "encoder": encoder,
                      "renditions": [r.to_dict() for r in group], "audio": False})  # fmt: skip
    audio = None
    if result.audio is not None:
        chosen = audio_settings(result.audio.channels, result.audio.sample_rate, settings.audio_bitrate_k)
        audio = {"bitrate_k": chosen.bitrate_k, "channels": chosen.channels, "sample_rate": chosen.sample_rate}
        # Audio is encoded once, in the CPU unit with the least video work.
        cpu_units = [u for u in units if u["encoder"] == CPU_ENCODER]
        if cpu_units:
            min(cpu_units, key=lambda u: sum(r["width"] * r["height"] for r in u["renditions"]))["audio"] = True
        else:
            units.append({"id": "cpu-audio", "encoder": CPU_ENCODER, "renditions": [], "audio": True})
    plan = {"renditions": [r.to_dict() for r in renditions], "units": units, "audio": audio,
            "preset": settings.x264_preset, "planned_encoder": encoder}  # fmt: skip
    with session_scope() as session:
        repository.set_plan(session, job_id, plan)
    _set_progress(job_id, PROGRESS_PLANNED)
    return plan


def units_for(plan: dict[str, Any], gpu: bool) -> list[dict[str, Any]]:
    """The plan's units for one pool: the CPU list or the GPU list (may be empty)."""
    return [u for u in plan["units"] if (u["encoder"] != CPU_ENCODER) == gpu]


def unit_label(unit: dict[str, Any]) -> str:
    names = [r["name"] for r in unit["renditions"]] + ([AUDIO] if unit["audio"] else [])
    return "+".join(names)


# --------------------------------------------------------------------------
# transcode
# --------------------------------------------------------------------------


def rendition_key(job_id: str, name: str) -> str:
    return f"{work_prefix(job_id)}renditions/{name}.mp4"


def transcode_unit(job_id: str, unit: dict[str, Any], settings: Settings | None = None) -> dict[str, Any]:
    """Encode one unit's renditions (and maybe the audio) from one decode."""
    settings = settings or get_settings()
    job = begin_step(job_id)
    result = ProbeResult.from_dict(job.probe)
    plan = job.plan
    renditions = [Rendition.from_dict(r) for r in unit["renditions"]]
    encoder = unit["encoder"]
    fallback_reason: str | None = None
    if encoder != CPU_ENCODER:
        works, reason = encoder_works(encoder)
        if not works:
            fallback_reason = f"{encoder} unusable on {socket.gethostname()}: {reason}"
            encoder = CPU_ENCODER
    storage = get_storage()
    total_units = max(1, len(plan["units"]))
    band = (PROGRESS_TRANSCODED - PROGRESS_PLANNED) / total_units

    def report(percent: float) -> None:
        log.info("job %s unit %s: %.1f%%", job_id, unit["id"], percent)
        # Progress reports double as the cancellation check: raising here
        # makes run_ffmpeg kill the encoder at once.
        if not _set_progress(job_id, PROGRESS_PLANNED + band * percent / 100.0):
            raise_if_cancelled(job_id)

    with scratch(job_id, f"transcode-{unit['id']}", settings) as workdir, local_copy(storage, job.source_key, workdir) as source:
        outputs = {r.name: workdir / f"{r.name}.mp4" for r in renditions}
        audio_out = workdir / f"{AUDIO}.mp4" if unit["audio"] else None
        audio = audio_settings(result.audio.channels, result.audio.sample_rate, plan["audio"]["bitrate_k"]) if audio_out else None

        def command(enc: str) -> list[str]:
            return unit_command(
                source, result.demuxer, (result.video.display_width, result.video.display_height), renditions, outputs,
                encoder=enc, preset=plan["preset"], audio=audio, audio_output=audio_out,
            )  # fmt: skip

        args = command(encoder)
        try:
            run = run_ffmpeg(args, duration_s=result.duration_s, timeout_s=settings.ffmpeg_timeout_s,
                             on_progress=report, progress_interval_s=settings.progress_interval_s)  # fmt: skip
        except FfmpegError as exc:
            if encoder == CPU_ENCODER:
                raise
            # A GPU that passed its test encode can still fail (driver reset,
            # session limit): finish on the CPU and say so in the provenance.
            fallback_reason = f"{encoder} failed: {exc.stderr_tail.splitlines()[-1:] or exc.returncode}"
            log.warning("job %s unit %s: %s; falling back to libx264", job_id, unit["id"], fallback_reason)
            encoder = CPU_ENCODER
            args = command(encoder)
            run = run_ffmpeg(args, duration_s=result.duration_s, timeout_s=settings.ffmpeg_timeout_s,
                             on_progress=report, progress_interval_s=settings.progress_interval_s)  # fmt: skip
        produced: dict[str, int] = {}
        for name, path in [*outputs.items(), *([(AUDIO, audio_out)] if audio_out else [])]:
            produced[name] = path.stat().st_size
            storage.move_file(rendition_key(job_id, name), path, content_type="video/mp4")
    provenance = {
        "encoder": encoder, "fell_back": fallback_reason is not None, "fallback_reason": fallback_reason,
        "ffmpeg_version": ffmpeg_version(), "command": run.command, "host": socket.gethostname(),
        "encode_seconds": round(run.seconds, 3),
    }  # fmt: skip
    with session_scope() as session:
        for r in renditions:
            repository.record_rendition(session, job_id, r.name, width=r.width, height=r.height,
                                        bitrate_kbps=r.bitrate_k, size_bytes=produced[r.name], **provenance)  # fmt: skip
        if audio_out is not None:
            repository.record_rendition(session, job_id, AUDIO, size_bytes=produced[AUDIO],
                                        bitrate_kbps=plan["audio"]["bitrate_k"], **provenance)  # fmt: skip
    log.info("job %s unit %s done in %.1f s on %s", job_id, unit["id"], run.seconds, encoder)
    return {"unit": unit["id"], "encoder": encoder, "seconds": run.seconds, "outputs": produced}


def make_job_poster(job_id: str) -> str:
    job = begin_step(job_id)
    result = ProbeResult.from_dict(job.probe)
    storage = get_storage()
    with scratch(job_id, "poster") as workdir, local_copy(storage, job.source_key, workdir) as source:
        poster = make_poster(source, result.demuxer, result.duration_s, workdir / "poster.jpg", result.video.display_width)
        storage.put_file(poster_key(job_id), poster, content_type="image/jpeg")
    return poster_key(job_id)


# --------------------------------------------------------------------------
# segment → upload (publish) → finalize
# --------------------------------------------------------------------------


def staging_hls_prefix(job_id: str) -> str:
    return f"{work_prefix(job_id)}hls/"


def segment_job(job_id: str, settings: Settings | None = None) -> dict[str, Any]:
    """Package every rendition as fMP4 HLS and write the master playlist (staged)."""
    settings = settings or get_settings()
    job = begin_step(job_id)
    plan = job.plan
    storage = get_storage()
    renditions = [Rendition.from_dict(r) for r in plan["renditions"]]
    names = [r.name for r in renditions] + ([AUDIO] if plan["audio"] else [])
    stats: dict[str, hls.MediaStats] = {}
    with scratch(job_id, "segment", settings) as workdir:
        out_root = workdir / "hls"
        for name in names:
            with local_copy(storage, rendition_key(job_id, name), workdir) as mp4:
                stats[name] = hls.segment_rendition(mp4, out_root / name, timeout_s=settings.ffmpeg_timeout_s)
        variants = [
            hls.Variant(uri=f"{r.name}/{hls.PLAYLIST}", width=r.width, height=r.height, fps=r.fps,
                        video_codec=hls.avc_codec_string(out_root / r.name / hls.INIT), stats=stats[r.name])
            for r in renditions
        ]  # fmt: skip
        audio = None
        if plan["audio"]:
            audio = hls.AudioRendition(uri=f"{AUDIO}/{hls.PLAYLIST}", channels=plan["audio"]["channels"], stats=stats[AUDIO])
        (out_root / hls.MASTER).write_text(hls.master_playlist(variants, audio))
        with session_scope() as session:
            for name, measured in stats.items():
                repository.update_rendition(session, job_id, name, bitrate_kbps=measured.average_bps // 1000,
                                            size_bytes=sum(seg.size for seg in measured.segments))  # fmt: skip
        storage.delete_prefix(staging_hls_prefix(job_id))  # a rerun must not mix old segments in
        for path in sorted(out_root.rglob("*")):
            if path.is_file():
                storage.move_file(staging_hls_prefix(job_id) + path.relative_to(out_root).as_posix(), path)
    _set_progress(job_id, PROGRESS_SEGMENTED)
    return {name: {"peak_bps": s.peak_bps, "average_bps": s.average_bps, "duration": s.duration,
                   "segments": len(s.segments)} for name, s in stats.items()}  # fmt: skip


def publish_job(job_id: str) -> str:
    """Copy staged HLS to its public prefix: media playlists and segments first, master last."""
    begin_step(job_id)
    storage = get_storage()
    staged = storage.list(staging_hls_prefix(job_id))
    master = staging_hls_prefix(job_id) + hls.MASTER
    if master not in staged:
        raise RuntimeError(f"no staged master playlist for job {job_id}; rerun the segment task")
    public = hls_prefix(job_id)
    # Old objects from an earlier, different ladder would be served stale.
    storage.delete(public + hls.MASTER)
    keep = {public + key[len(staging_hls_prefix(job_id)):] for key in staged}
    for key in storage.list(public):
        if key not in keep:
            storage.delete(key)
    # Segments before playlists before master: a player can never see a
    # playlist that names a segment not yet there.
    order = sorted((k for k in staged if k != master), key=lambda k: (k.endswith(".m3u8"), k))
    for key in [*order, master]:
        storage.copy(key, public + key[len(staging_hls_prefix(job_id)):])
    _set_progress(job_id, PROGRESS_PUBLISHED)
    return public + hls.MASTER


def finalize_job(job_id: str) -> dict[str, Any]:
    """Mark the job completed, only once its master playlist is published."""
    job = begin_step(job_id)
    storage = get_storage()
    if not storage.exists(master_key(job_id)):
        raise RuntimeError(f"master playlist of job {job_id} is not published; rerun the upload task")
    with session_scope() as session:
        renditions = [
            {"name": r.rendition, "width": r.width, "height": r.height, "bitrate_kbps": r.bitrate_kbps,
             "size_bytes": r.size_bytes, "encoder": r.encoder, "fell_back": r.fell_back,
             "encode_seconds": r.encode_seconds}
            for r in repository.list_renditions(session, job_id)
        ]  # fmt: skip
        outputs = {
            "master_key": master_key(job_id),
            "master_url": storage.url_for(master_key(job_id)),
            "poster_key": poster_key(job_id) if storage.exists(poster_key(job_id)) else None,
            "duration_s": (job.probe or {}).get("duration_s"),
            "renditions": renditions,
        }
        repository.set_outputs(session, job_id, outputs)
        repository.transition(session, job_id, JobStatus.COMPLETED)
    storage.delete_prefix(work_prefix(job_id))
    return outputs


def fail_job(job_id: str, reason: str) -> None:
    """Record a final failure (called by the orchestrator's failure callback)."""
    with session_scope() as session:
        job = repository.get_job(session, job_id)
        if job.status in FINAL:
            return
        repository.transition(session, job_id, JobStatus.FAILED, error=reason[:4000])
    log.error("job %s failed: %s", job_id, reason)
