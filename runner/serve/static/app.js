// The vlrun console page: one WebSocket per page, binary audio both ways, JSON events.
import { PageAudio } from "./audio.js";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token");
const withToken = (path) => (token ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : path);

const state = {
  ws: null, audio: null, conversation: null, pushToTalk: false, talking: false,
  audioItem: null, streaming: new Map(), tools: new Map(), t0: performance.now(),
  lastSpeechStop: null,
};
// For tests and curious people: what the page did, measured in the page.
window.vlrun = { state, stats: () => state.audio?.stats ?? null, events: [] };

function say(text) { $("state").textContent = text; }

function message(kind, text) {
  const li = document.createElement("li");
  li.textContent = `${kind}: ${text}`;
  li.dataset.kind = kind;
  $("messages").append(li);
  while ($("messages").children.length > 200) $("messages").firstChild.remove();
}

function connect() {
  const url = new URL(withToken("ws"), location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (e) => (typeof e.data === "string" ? onEvent(JSON.parse(e.data)) : onAudio(e.data));
  ws.onclose = () => {
    say("Disconnected from vlrun serve. Reload the page to reconnect.");
    setRunning(false);
    $("start").disabled = true;
  };
  state.ws = ws;
}

function send(obj) {
  if (state.ws?.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(obj));
}

function onAudio(buf) {
  if (state.audio && state.audioItem) state.audio.play(state.audioItem, buf);
}

const handlers = {
  hello(m) {
    const sel = $("profile");
    sel.replaceChildren(...m.profiles.map((p) => new Option(`${p.name} (${p.file})`, p.name)));
    if (m.profiles.some((p) => p.name === "casual-chat")) sel.value = "casual-chat";
    sel.disabled = m.profiles.length === 0;
    $("start").disabled = m.profiles.length === 0;
    $("target").textContent = m.embedded
      ? "Offline: the embedded Voice Live emulator (scripted replies, not a model)"
      : `Service: ${m.target}`;
    say(m.profiles.length ? "Pick a profile and press Start." : "No profiles found.");
  },
  problems(m) {
    const list = $("problem-list");
    list.replaceChildren(...m.problems.map((p) => {
      const li = document.createElement("li");
      const loc = document.createElement("span");
      loc.className = "loc";
      loc.textContent = p.location;
      li.append(loc, `: ${p.severity}: ${p.message}`);
      if (p.hint) { const h = document.createElement("div"); h.textContent = `hint: ${p.hint}`; li.append(h); }
      return li;
    }));
    $("problems").hidden = false;
    say(`Profile ${m.profile} has problems; fix them and press Start again.`);
    setRunning(false);
  },
  async session(m) {
    state.conversation = m.conversation;
    state.pushToTalk = m.push_to_talk;
    state.t0 = performance.now();
    $("explain").replaceChildren(...m.explain.map((row) => tr(row)));
    $("dl-transcript").href = withToken(`api/conversations/${m.conversation}/transcript.txt`);
    $("dl-trace").href = withToken(`api/conversations/${m.conversation}/trace.jsonl`);
    $("downloads").hidden = false;
    try {
      state.audio = new PageAudio({
        frame: (pcm) => state.ws?.readyState === WebSocket.OPEN && state.ws.send(pcm),
        level: meter,
        played: (item, ms) => {
          send({ type: "played", item, ms });
          window.dispatchEvent(new CustomEvent("vlrun-played", { detail: { item, ms } }));
        },
        flushed: (item, ms) => {
          send({ type: "flushed", item, ms });
          window.dispatchEvent(new CustomEvent("vlrun-flushed", { detail: { item, ms } }));
        },
      });
      await state.audio.start({
        inputRate: m.input_rate, outputRate: m.output_rate,
        echoCancellation: $("echo").checked, noiseSuppression: $("noise").checked,
      });
      send({ type: "format", rate: m.input_rate });
      updateSending();
      say(state.pushToTalk || $("ptt").checked
        ? "Connected. Hold the conversation with Talk (Space toggles)."
        : "Connected. Speak, or type a turn.");
    } catch (err) {
      message("warning", `no microphone (${err.message}); typed turns only`);
      say("Connected without a microphone: type a turn.");
    }
  },
  ready() {
    document.body.dataset.ready = "true";
    message("notice", "session configured");
  },
  audio_item(m) { state.audioItem = m.item; },
  flush() {
    state.audio?.flush();
    state.audioItem = null;
  },
  user(m) { line("you", m.text, m.item); },
  assistant_delta(m) {
    let li = state.streaming.get(m.item);
    if (!li) { li = line("assistant", "", m.item); li.classList.add("streaming"); state.streaming.set(m.item, li); }
    li.querySelector(".text").textContent += m.delta;
  },
  assistant(m) {
    let li = state.streaming.get(m.item);
    if (!li) li = line("assistant", "", m.item);
    li.classList.remove("streaming");
    state.streaming.delete(m.item);
    li.querySelector(".text").textContent = m.text + (m.interrupted ? " [interrupted]" : "");
    if (m.interrupted) li.dataset.interrupted = "true";
  },
  tool_call(m) {
    const row = document.createElement("tr");
    row.dataset.callId = m.call_id;
    for (const v of [m.name, m.arguments, "running…", ""]) { const td = document.createElement("td"); td.textContent = v; row.append(td); }
    state.tools.set(m.call_id, row);
    $("tool-rows").append(row);
  },
  tool_result(m) {
    const row = state.tools.get(m.call_id);
    if (!row) return;
    row.children[2].textContent = (m.ok ? "" : "failed: ") + m.text;
    row.children[3].textContent = m.duration_ms.toFixed(0);
    row.dataset.ok = String(m.ok);
  },
  timeline(m) {
    const detail = [];
    if (m.latency_ms !== undefined) detail.push(`${m.what}: ${m.latency_ms.toFixed(0)} ms`);
    if (m.audio_end_ms !== undefined) detail.push(`at ${m.audio_end_ms} ms`);
    if (m.detail) detail.push(m.detail);
    if (m.item_id) detail.push(m.item_id);
    const row = tr([String(m.t_ms), m.event.replace("_", " "), detail.join("; ")]);
    row.dataset.event = m.event;
    $("timeline").append(row);
  },
  notice(m) { message("notice", m.text); },
  warning(m) { message("warning", m.text); },
  error(m) { message("error", m.text + (m.hint ? ` (hint: ${m.hint})` : "")); },
  refused(m) { message("error", m.text); say(m.text); setRunning(false); },
  async ended(m) {
    say(`Conversation ended (exit ${m.code}). Press Start for a new one.`);
    await state.audio?.stop();
    state.audio = null;
    setRunning(false);
  },
};

async function onEvent(m) {
  window.vlrun.events.push(m.type);
  const h = handlers[m.type];
  if (h) await h(m);
  window.dispatchEvent(new CustomEvent("vlrun-event", { detail: m }));
}

function tr(cells) {
  const row = document.createElement("tr");
  for (const c of cells) { const td = document.createElement("td"); td.textContent = c; row.append(td); }
  return row;
}

function line(who, text, item) {
  const li = document.createElement("li");
  li.dataset.role = who;
  li.dataset.item = item;
  const w = document.createElement("span");
  w.className = "who";
  w.textContent = `${who}: `;
  const t = document.createElement("span");
  t.className = "text";
  t.textContent = text;
  li.append(w, t);
  $("transcript").append(li);
  li.scrollIntoView({ block: "nearest" });
  return li;
}

function meter(db) {
  const v = Math.max(-60, Math.min(0, db));
  $("meter").value = v;
  $("meter-db").textContent = `${v.toFixed(0)} dB`;
}

function setRunning(on) {
  $("start").disabled = on || $("profile").options.length === 0;
  $("stop").disabled = !on;
  $("profile").disabled = on;
  $("text").disabled = !on;
  $("send").disabled = !on;
  $("talk").disabled = !on;
  if (!on) { state.talking = false; $("talk").setAttribute("aria-pressed", "false"); $("talk").textContent = "Talk (Space)"; }
}

// Push-to-talk: manual turns go through the server's talk toggle; with a VAD profile the
// page's own toggle just gates which frames are sent.
function updateSending() {
  // Manual turns: frames always flow; vlrun sends them only between the two Talk presses
  // (and commits the turn at the first frame after the second).
  const gated = !state.pushToTalk && $("ptt").checked;
  state.audio?.setSending(!gated || state.talking);
}

function toggleTalk() {
  if ($("talk").disabled) return;
  state.talking = !state.talking;
  $("talk").setAttribute("aria-pressed", String(state.talking));
  $("talk").textContent = state.talking ? "Talking… (Space to send)" : "Talk (Space)";
  if (state.pushToTalk) send({ type: "talk" });
  updateSending();
}

$("start").onclick = () => {
  $("problems").hidden = true;
  for (const id of ["transcript", "tool-rows", "timeline", "explain"]) $(id).replaceChildren();
  state.streaming.clear();
  state.tools.clear();
  send({ type: "start", profile: $("profile").value });
  setRunning(true);
  say("Starting…");
};
$("stop").onclick = () => send({ type: "stop", graceful: true });
$("talk").onclick = toggleTalk;
$("ptt").onchange = updateSending;
$("typed").onsubmit = (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  send({ type: "text", text });
  $("text").value = "";
};
document.addEventListener("keydown", (e) => {
  const typing = e.target instanceof HTMLInputElement && e.target.type === "text";
  if (e.code === "Space" && !typing && !(e.target instanceof HTMLButtonElement) &&
      !(e.target instanceof HTMLSelectElement)) {
    e.preventDefault();
    toggleTalk();
  }
});

connect();
