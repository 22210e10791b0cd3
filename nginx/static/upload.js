// Minimal upload page: POST /api/upload with the typed X-API-Key (no cookies),
// then link to the player page of the new job.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  $("upload").addEventListener("submit", (event) => {
    event.preventDefault();
    $("error").textContent = "";
    const form = new FormData();
    form.append("file", $("file").files[0]);
    form.append("priority", $("priority").value);
    const xhr = new XMLHttpRequest();  // XHR, for upload progress events
    xhr.open("POST", "/api/upload");
    xhr.setRequestHeader("X-API-Key", $("apikey").value.trim());
    xhr.upload.onprogress = (e) => {
      if (!e.lengthComputable) return;
      $("progress").hidden = false;
      $("progress").value = (100 * e.loaded) / e.total;
    };
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (xhr.status !== 200) {
        $("error").textContent = (body.error && body.error.message) || `upload failed (${xhr.status})`;
        return;
      }
      const link = document.createElement("a");
      link.href = `/watch/${body.job_id}`;
      link.textContent = `Job ${body.job_id} is ${body.status}: watch it here when it is done`;
      $("status").replaceChildren(link);
    };
    xhr.onerror = () => { $("error").textContent = "network error"; };
    xhr.send(form);
  });
})();
