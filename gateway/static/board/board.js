// The calling board (叫号屏): one department's calls and next patients, live from the gateway's stream.
// The screen holds a board session cookie (HttpOnly: this script never sees it); without one it shows the
// provisioning form, whose key goes out once in the Authorization header of POST /v1/board-sessions.
"use strict";

(() => {
  const department = decodeURIComponent(location.pathname.split("/")[2] || "");
  const boardUrl = `/v1/boards/${encodeURIComponent(department)}`;
  const $ = (id) => document.getElementById(id);
  let stream = null;
  let shownCalls = null; // keys of the calls on screen; null until the first board (no chime for it)
  let audio = null;
  let chimes = 0;

  function setState(state, text) {
    document.body.dataset.state = state;
    $("status").textContent = text;
  }

  // --- the chime: two tones from the Web Audio API (no sound file to fetch) --------------------------
  function audioContext() {
    if (!audio) {
      audio = new AudioContext();
      audio.onstatechange = showSoundButton;
    }
    return audio;
  }

  function showSoundButton() {
    const suspended = audioContext().state !== "running";
    $("sound").hidden = !suspended;
    document.body.dataset.audio = audio.state;
  }

  function chime() {
    const context = audioContext();
    if (context.state === "suspended") context.resume().catch(() => {});
    const start = context.currentTime;
    [[880, 0], [660, 0.35]].forEach(([frequency, offset]) => {
      const tone = context.createOscillator();
      const volume = context.createGain();
      tone.frequency.value = frequency;
      volume.gain.setValueAtTime(0.0001, start + offset);
      volume.gain.exponentialRampToValueAtTime(0.5, start + offset + 0.02);
      volume.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.6);
      tone.connect(volume).connect(context.destination);
      tone.start(start + offset);
      tone.stop(start + offset + 0.65);
    });
    chimes += 1;
    document.body.dataset.chimes = String(chimes);
    showSoundButton();
  }

  // --- drawing a board -----------------------------------------------------------------------------
  function item(cells, className) {
    const li = document.createElement("li");
    if (className) li.className = className;
    for (const [name, text] of cells) {
      const span = document.createElement("span");
      span.className = name;
      span.textContent = text; // never HTML: names come from outside
      li.append(span);
    }
    return li;
  }

  const callKey = (call) => `${call.display_number}@${call.counter ?? ""}`;

  function render(screen) {
    const keys = screen.calls.map(callKey);
    const fresh = shownCalls === null ? [] : keys.filter((key) => !shownCalls.has(key));
    $("calls").replaceChildren(
      ...screen.calls.map((call) =>
        item(
          [
            ["number", call.display_number],
            ["name", call.name ?? ""],
            ["counter", call.counter ? `请到 ${call.counter} 号` : ""],
          ],
          fresh.includes(callKey(call)) ? "fresh" : "",
        ),
      ),
    );
    $("next").replaceChildren(
      ...screen.next.map((ticket) => item([["number", ticket.display_number], ["name", ticket.name ?? ""]])),
    );
    $("waiting-count").textContent = `(${screen.waiting_count})`;
    $("suspended").hidden = !screen.suspended;
    $("board").hidden = false;
    $("provision").hidden = true;
    shownCalls = new Set(keys);
    document.body.dataset.renderedAt = String(Date.now());
    setState("live", `更新于 ${new Date().toLocaleTimeString("zh-CN", { hour12: false })}`);
    if (fresh.length) chime();
  }

  // --- the session, the first read and the stream ----------------------------------------------------
  function showProvisioning(message) {
    if (stream) stream.close();
    stream = null;
    $("board").hidden = true;
    $("provision").hidden = false;
    $("provision-error").textContent = message || "";
    setState("unprovisioned", "未设置 · Not set up");
  }

  async function start() {
    let response;
    try {
      response = await fetch(boardUrl, { credentials: "same-origin", cache: "no-store" });
    } catch {
      setState("stale", "网络中断，重试中 · Offline, retrying");
      setTimeout(start, 3000);
      return;
    }
    if (response.status === 401) {
      showProvisioning();
      return;
    }
    if (!response.ok) {
      setState("stale", "暂时无法更新 · Cannot update, retrying");
      setTimeout(start, 3000);
      return;
    }
    render(await response.json());
    follow();
  }

  function follow() {
    if (stream) stream.close();
    stream = new EventSource(`${boardUrl}/stream`);
    stream.onopen = () => (document.body.dataset.stream = "open");
    stream.addEventListener("board", (event) => render(JSON.parse(event.data)));
    stream.addEventListener("stale", () => setState("stale", "暂时无法更新 · Cannot update"));
    stream.onerror = () => {
      document.body.dataset.stream = "closed";
      // CONNECTING: the browser retries by itself. CLOSED: refused (no session any more?): ask again.
      if (stream && stream.readyState === EventSource.CLOSED) {
        stream = null;
        setTimeout(start, 1000);
      }
    };
  }

  $("provision").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("board-key");
    const key = input.value.trim();
    input.value = "";
    let response;
    try {
      response = await fetch("/v1/board-sessions", {
        method: "POST",
        credentials: "same-origin",
        headers: { authorization: `Bearer ${key}` },
      });
    } catch {
      $("provision-error").textContent = "网络错误 · Network error";
      return;
    }
    if (response.status !== 201) {
      const problem = await response.json().catch(() => ({}));
      $("provision-error").textContent = problem.detail || `HTTP ${response.status}`;
      return;
    }
    audioContext().resume().catch(() => {}); // the click is the user gesture browsers want for sound
    showSoundButton();
    start();
  });

  $("sound").addEventListener("click", () => audioContext().resume().then(showSoundButton));

  $("department").textContent = department;
  document.title = `叫号屏 · ${department}`;
  audioContext();
  showSoundButton();
  start();
})();
