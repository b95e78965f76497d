// The review workspace's page behaviour, plain JavaScript, no library:
// - any element with data-start / data-end (timeline windows, evidence links, frame times) seeks the player there;
//   "loop the window" replays it;
// - videos the browser cannot play are played as clips transcoded on the server (/cases/ID/clip.mp4);
// - the correction editor: windows dragged by their edges (or moved whole) on a track aligned with the timeline,
//   or typed; the form posts them as JSON;
// - a question asked here shows the agent's progress until its episode is ready.
"use strict";

(function () {
  const dataNode = document.getElementById("page-data");
  if (!dataNode) return;
  const page = JSON.parse(dataNode.textContent);
  const player = document.getElementById("player");
  const duration = page.duration;
  let offset = 0;            // seconds of the video at the start of what the player holds (a clip's start)
  let clip = null;           // [start, end] of the loaded clip, when the original cannot be played
  let loopWindow = null;     // [start, end] replayed while "loop" is checked

  // ---- time -----------------------------------------------------------------------------------------------
  function clock(t) {
    const tenths = Math.round(t * 10);
    const m = Math.floor(tenths / 600), s = (tenths % 600) / 10;
    return m + ":" + (s < 10 ? "0" : "") + s.toFixed(s % 1 ? 1 : 0);
  }
  function parseTime(text) {  // "87.5", "1:27.5", "1:02:07" → seconds, or NaN
    const parts = String(text).trim().replace(/s$/, "").split(":").map(Number);
    if (!parts.length || parts.some((p) => !Number.isFinite(p))) return NaN;
    return parts.reduce((acc, p) => acc * 60 + p, 0);
  }
  const round2 = (t) => Math.round(t * 100) / 100;
  const videoTime = () => player.currentTime + offset;

  // ---- seeking --------------------------------------------------------------------------------------------
  function seek(start, end) {
    loopWindow = end > start ? [start, end] : [start, Math.min(duration, start + 2)];
    document.getElementById("looping").textContent = "window " + clock(loopWindow[0]) + "–" + clock(loopWindow[1]);
    if (page.playable) {
      player.currentTime = start;
      return;
    }
    if (clip && start >= clip[0] && loopWindow[1] <= clip[1]) {
      player.currentTime = start - offset;
      return;
    }
    const from = Math.max(0, start - 5), to = Math.min(duration, Math.max(loopWindow[1], start) + 5);
    clip = [from, to];
    offset = from;
    player.src = "/cases/" + page.case_id + "/clip.mp4?start=" + from.toFixed(2) + "&end=" + to.toFixed(2);
    player.addEventListener("loadedmetadata", () => { player.currentTime = start - offset; }, { once: true });
  }

  if (player) {
    document.addEventListener("click", (event) => {
      const target = event.target.closest("[data-start]");
      if (!target || target.closest("#editor")) return;
      event.preventDefault();
      document.querySelectorAll(".tl .playing").forEach((n) => n.classList.remove("playing"));
      if (target.closest(".tl")) target.classList.add("playing");
      seek(parseFloat(target.dataset.start), parseFloat(target.dataset.end));
    });
    player.addEventListener("timeupdate", () => {
      document.getElementById("now").textContent = clock(videoTime());
      const loop = document.getElementById("loop");
      if (loop.checked && loopWindow && videoTime() >= loopWindow[1]) player.currentTime = loopWindow[0] - offset;
    });
    if (!page.playable && page.episode_id !== null) seek(page.start, page.start);
  }

  // ---- the correction editor ------------------------------------------------------------------------------
  const editor = document.getElementById("editor");
  const hidden = document.getElementById("windows");
  if (editor && hidden) {
    let windows = JSON.parse(hidden.value || "[]").map((w) => [Number(w[0]), Number(w[1])]);
    const rows = document.querySelector("#window-rows tbody");
    const MIN = 0.1;  // the shortest window, seconds

    function commit() {
      windows.sort((a, b) => a[0] - b[0]);
      hidden.value = JSON.stringify(windows.map((w) => [round2(w[0]), round2(w[1])]));
      draw();
    }
    function draw() {
      editor.replaceChildren();
      rows.replaceChildren();
      windows.forEach((w, i) => {
        const box = document.createElement("div");
        box.className = "win";
        box.dataset.index = i;
        box.style.left = (w[0] / duration * 100) + "%";
        box.style.width = ((w[1] - w[0]) / duration * 100) + "%";
        box.title = clock(w[0]) + "–" + clock(w[1]);
        for (const side of ["start", "end"]) {
          const edge = document.createElement("div");
          edge.className = "edge " + side;
          edge.dataset.side = side;
          box.appendChild(edge);
        }
        editor.appendChild(box);
        const row = document.createElement("tr");
        row.innerHTML = '<td><input class="w-start" aria-label="start"></td><td>–</td>' +
          '<td><input class="w-end" aria-label="end"></td><td><button type="button" class="w-remove">remove</button></td>';
        row.querySelector(".w-start").value = round2(w[0]);
        row.querySelector(".w-end").value = round2(w[1]);
        row.querySelector(".w-start").addEventListener("change", (e) => typed(i, 0, e.target));
        row.querySelector(".w-end").addEventListener("change", (e) => typed(i, 1, e.target));
        row.querySelector(".w-remove").addEventListener("click", () => { windows.splice(i, 1); commit(); });
        rows.appendChild(row);
      });
    }
    function typed(i, side, input) {
      const t = parseTime(input.value);
      const w = windows[i].slice();
      w[side] = t;
      if (!Number.isFinite(t) || w[0] < 0 || w[1] > duration || w[1] - w[0] < MIN) {
        input.setCustomValidity("a time inside the video, the end after the start");
        input.reportValidity();
        return;
      }
      input.setCustomValidity("");
      windows[i] = w;
      commit();
    }
    function secondsAt(clientX) {
      const box = editor.getBoundingClientRect();
      return Math.min(Math.max((clientX - box.left) / box.width, 0), 1) * duration;
    }
    editor.addEventListener("pointerdown", (event) => {
      const box = event.target.closest(".win");
      if (!box) return;
      event.preventDefault();
      const i = Number(box.dataset.index);
      const side = event.target.dataset.side || "move";
      const grab = secondsAt(event.clientX), original = windows[i].slice();
      editor.setPointerCapture(event.pointerId);
      const move = (e) => {
        const t = secondsAt(e.clientX);
        const w = windows[i];
        if (side === "start") w[0] = Math.min(t, w[1] - MIN);
        else if (side === "end") w[1] = Math.max(t, w[0] + MIN);
        else {
          const shift = Math.min(Math.max(t - grab, -original[0]), duration - original[1]);
          w[0] = original[0] + shift;
          w[1] = original[1] + shift;
        }
        const el = editor.children[i];
        el.style.left = (w[0] / duration * 100) + "%";
        el.style.width = ((w[1] - w[0]) / duration * 100) + "%";
      };
      const up = () => {
        editor.removeEventListener("pointermove", move);
        editor.removeEventListener("pointerup", up);
        editor.removeEventListener("pointercancel", up);
        commit();
      };
      editor.addEventListener("pointermove", move);
      editor.addEventListener("pointerup", up);
      editor.addEventListener("pointercancel", up);
    });
    document.getElementById("add-window").addEventListener("click", () => {
      const t = player ? videoTime() : 0;
      const start = Math.max(0, Math.min(t, duration - 5));
      windows.push([start, Math.min(duration, start + 5)]);
      commit();
    });
    commit();

    const reviewer = document.getElementById("reviewer");
    if (!reviewer.value) reviewer.value = localStorage.getItem("medscope-reviewer") || "";
    document.getElementById("review-form").addEventListener("submit", () => {
      localStorage.setItem("medscope-reviewer", reviewer.value);
    });
  }

  // ---- a question's progress ------------------------------------------------------------------------------
  if (page.job_id) {
    const panel = document.getElementById("job");
    const status = document.getElementById("job-status");
    const list = document.getElementById("job-events");
    panel.hidden = false;
    const poll = async () => {
      const response = await fetch("/jobs/" + page.job_id, { headers: { Accept: "application/json" } });
      if (!response.ok) { status.textContent = "job " + page.job_id + ": " + response.status; return; }
      const job = await response.json();
      status.textContent = job.question + " — " + job.status + (job.error ? ": " + job.error : "");
      list.replaceChildren(...job.events.map((text) => {
        const li = document.createElement("li");
        li.textContent = text;
        return li;
      }));
      if (job.status === "done" && job.episode_id) {
        const link = document.createElement("a");
        link.href = "/cases/" + page.case_id + "?episode=" + job.episode_id;
        link.id = "job-episode";
        link.textContent = "Open the new episode";
        status.append(" — ", link);
      } else if (job.status === "queued" || job.status === "running") {
        setTimeout(poll, 500);
      }
    };
    poll();
  }
})();
