// Player for /watch/<job_id>: asks the job API (X-API-Key typed by the user,
// never stored: no cookies, no localStorage) for the job's signed master URL
// and plays it with the vendored hls.js. State for tests: window.playerState.
"use strict";
(function () {
  const jobId = location.pathname.split("/").pop();
  const $ = (id) => document.getElementById(id);
  const state = (window.playerState = { jobId, errors: [], levels: [], levelSwitches: [], ready: false });
  $("job").textContent = jobId;

  function fail(message) {
    state.errors.push(message);
    $("error").textContent = message;
  }

  async function load(key) {
    $("error").textContent = "";
    $("status").textContent = "Loading job…";
    const response = await fetch(`/api/jobs/${jobId}`, { headers: { "X-API-Key": key }, credentials: "omit" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      fail((body.error && body.error.message) || `API answered ${response.status}`);
      return;
    }
    if (body.status !== "completed" || !body.outputs) {
      $("status").textContent = `Job is ${body.status} (${body.progress ?? 0}%)`;
      return;
    }
    $("status").textContent = `Job completed: ${body.outputs.renditions.length} renditions`;
    play(body.outputs.master_url, body.outputs.poster_url);
  }

  function play(masterUrl, posterUrl) {
    const video = $("video");
    if (posterUrl) video.poster = posterUrl;
    if (!window.Hls || !Hls.isSupported()) {
      if (video.canPlayType("application/vnd.apple.mpegurl")) {  // Safari: native HLS
        video.src = masterUrl;
        video.play().catch(() => {});
        return;
      }
      fail("This browser supports neither Media Source Extensions nor native HLS.");
      return;
    }
    const hls = (window.hls = new Hls({ enableWorker: true }));
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (data.fatal) fail(`Playback error: ${data.type} ${data.details}`);
      else state.errors.push(`non-fatal ${data.details}`);
    });
    hls.on(Hls.Events.MANIFEST_PARSED, (_event, data) => {
      const select = $("quality");
      state.levels = data.levels.map((l) => `${l.height}p`);
      data.levels.forEach((level, index) => {
        const option = document.createElement("option");
        option.value = String(index);
        option.textContent = `${level.height}p (${Math.round(level.bitrate / 1000)} kb/s)`;
        select.appendChild(option);
      });
      select.disabled = false;
      state.ready = true;
      video.play().catch((e) => state.errors.push(`play(): ${e.name}`));
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_event, data) => {
      const level = hls.levels[data.level];
      state.levelSwitches.push(data.level);
      $("level").textContent = `Playing ${level.height}p`;
    });
    $("quality").addEventListener("change", (event) => {
      // -1 = automatic (ABR); else lock to the chosen rendition at once.
      hls.currentLevel = Number(event.target.value);
    });
    hls.loadSource(masterUrl);
    hls.attachMedia(video);
  }

  $("keyform").addEventListener("submit", (event) => {
    event.preventDefault();
    load($("apikey").value.trim()).catch((e) => fail(String(e)));
  });
})();
