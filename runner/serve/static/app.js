// The vlrun console page: one WebSocket per page, binary audio both ways, JSON events.
// Everything shown comes from the server's messages and is set with textContent (never as
// markup); nothing secret is ever sent here.
import { PageAudio, FRAME_MS } from "./audio.js";
import { Picture } from "./picture.js";
import { Wave, pcmPeaks } from "./wave.js";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token");
const withToken = (path) => (token ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : path);
const RAW_ROWS = 2000;          // the raw event table keeps the latest rows

const state = {
  ws: null, audio: null, conversation: null, pushToTalk: false, talking: false,
  audioItem: null, streaming: new Map(), tools: new Map(), t0: performance.now(),
  lastSpeechStop: null, embedded: false, mocks: null, outputRate: 24000,
  replyPeaks: { peak: 0, n: 0 }, replyBars: 0, profiles: [], profile: null,
  maxImageBytes: 8 * 1024 * 1024,
  duplex: false, typedTurns: true, images: true, backchannels: 0, yields: 0,
};
const picture = new Picture($("picture"), $("picture-scroll"), $("picture-empty"));
const waves = {
  you: new Wave($("wave-you"), $("wave-you-note"), { on: "#0f766e", off: "#ccece8", cut: "#c2410c" }),
  assistant: new Wave($("wave-assistant"), $("wave-assistant-note"), { on: "#1d4ed8", off: "#c9d6f5", cut: "#c2410c" }),
};
// For tests and curious people: what the page did, measured in the page.
window.vlrun = {
  state, stats: () => state.audio?.stats ?? null, events: [],
  picture: () => picture.summary(),
  waves: () => ({ you: waves.you.peaks.length, assistant: waves.assistant.peaks.length,
                  played: waves.assistant.playedBars, cut: waves.assistant.cutBar }),
};

const TEXT_PLACEHOLDER = $("text").placeholder;

function say(text) { $("state").textContent = text; }

function message(kind, text) {
  const li = document.createElement("li");
  li.textContent = `${kind}: ${text}`;
  li.dataset.kind = kind;
  $("messages").append(li);
  while ($("messages").children.length > 200) $("messages").firstChild.remove();
  $("messages-count").textContent = `(${$("messages").children.length})`;
  li.scrollIntoView({ block: "nearest" });
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
  if (!state.audio || !state.audioItem) return;
  // Before the buffer goes to the worklet (it is transferred): the reply's waveform and length.
  const perBar = Math.round(state.outputRate * FRAME_MS / 1000);
  for (const p of pcmPeaks(buf, perBar, state.replyPeaks)) waves.assistant.push(p);
  picture.replyAudio(state.audioItem, (buf.byteLength / 2 / state.outputRate) * 1000);
  state.audio.play(state.audioItem, buf);
}

function mockText(file, tools) {
  return `Tool calls answered from mocks (${file}${tools?.length ? `: ${tools.join(", ")}` : ""}), not the plugins`;
}

// Which mocks file answers the picked profile's tool calls (each profile may have its own).
function showProfileMocks() {
  const picked = state.profiles.find((p) => p.name === $("profile").value);
  const file = picked?.mocks ?? null;
  $("mocks").textContent = file ? mockText(file) : "";
  $("mocks").hidden = !file;
  $("mocks").dataset.profile = picked?.name ?? "";
}

const handlers = {
  hello(m) {
    const sel = $("profile");
    state.profiles = m.profiles;
    if (m.max_image_bytes) state.maxImageBytes = m.max_image_bytes;
    sel.replaceChildren(...m.profiles.map((p) => {
      const option = new Option(`${p.name} (${p.file}${p.mocks ? ", tools mocked" : ""})`, p.name);
      if (p.mocks) option.title = `tool calls answered from ${p.mocks}`;
      return option;
    }));
    if (m.profiles.some((p) => p.name === "casual-chat")) sel.value = "casual-chat";
    sel.disabled = m.profiles.length === 0;
    $("start").disabled = m.profiles.length === 0;
    state.embedded = Boolean(m.embedded);
    const pace = m.emulator_speed === 1 ? "" : m.emulator_speed === 0 ? "; replies sent at once"
      : `; replies sent at ${m.emulator_speed}x real time, as the service sends ahead`;
    $("target").textContent = m.embedded
      ? `Offline: the embedded Voice Live emulator (scripted replies, not a model${pace})`
      : `Service: ${m.target}`;
    showProfileMocks();
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
    state.outputRate = m.output_rate;
    state.t0 = performance.now();
    state.mocks = m.mocks ?? null;
    state.profile = m.profile;
    // GPT-Live (full duplex): it backchannels and decides by itself when to answer
    state.duplex = Boolean(m.duplex);
    state.typedTurns = m.typed_turns !== false;
    state.images = m.images !== false;
    state.backchannels = 0;
    state.yields = 0;
    document.body.dataset.duplex = String(state.duplex);
    applyTurnKinds();
    if (state.duplex) {
      message("notice", "GPT-Live: full duplex. Keep the microphone on: it makes brief listening "
        + "sounds (backchannels) while you speak and decides by itself when to answer.");
    }
    picture.running = true;
    if (m.node) picture.node(0, m.node);
    // what this conversation's tools really answer from (nothing mocked: the badge goes)
    $("mocks").textContent = state.mocks ? mockText(state.mocks.file, state.mocks.tools) : "";
    $("mocks").hidden = !state.mocks;
    $("explain").replaceChildren(...m.explain.map((row) => tr(row)));
    $("dl-transcript").href = withToken(`api/conversations/${m.conversation}/transcript.txt`);
    $("dl-trace").href = withToken(`api/conversations/${m.conversation}/trace.jsonl`);
    $("downloads").hidden = false;
    try {
      state.audio = new PageAudio({
        frame: (pcm) => state.ws?.readyState === WebSocket.OPEN && state.ws.send(pcm),
        level: (db, peak) => { meter(db); waves.you.push(peak); },
        played: (item, ms) => {
          send({ type: "played", item, ms });
          picture.played(item, ms);
          if (item === state.audioItem) {
            waves.assistant.played(Math.floor(ms / FRAME_MS));
            $("wave-assistant-note").textContent = `played ${(ms / 1000).toFixed(1)} s`;
          }
          window.dispatchEvent(new CustomEvent("vlrun-played", { detail: { item, ms } }));
        },
        flushed: (item, ms) => {
          send({ type: "flushed", item, ms });
          if (item) picture.cut(item, ms);
          waves.assistant.cut(Math.floor(ms / FRAME_MS));
          $("wave-assistant-note").textContent = `cut at ${Math.round(ms)} ms`;
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
  audio_item(m) {
    state.audioItem = m.item;
    state.replyPeaks = { peak: 0, n: 0 };
    picture.replyStarted(m.t_ms ?? picture.now(), m.item);
    waves.assistant.reset("playing…");
  },
  flush() {
    state.audio?.flush();
    state.audioItem = null;
  },
  user(m) {
    line("you", m.text, m.item);
    picture.userText(m.t_ms ?? picture.now(), m.item, m.text);
  },
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
    picture.replyText(m.item, m.text, m.interrupted);
  },
  // GPT-Live's listening sound while the caller speaks: not a reply and not a barge-in (the
  // playback goes on, nothing is flushed)
  backchannel(m) {
    state.backchannels++;
    const li = line("assistant", m.text, m.item);
    li.dataset.backchannel = "true";
    li.querySelector(".who").textContent = "assistant (backchannel): ";
    picture.backchannel(m.item, m.text);
  },
  tool_call(m) {
    const row = document.createElement("tr");
    row.dataset.callId = m.call_id;
    for (const v of [m.name, prettyJson(m.arguments), "running…", ""]) { const td = document.createElement("td"); td.textContent = v; row.append(td); }
    state.tools.set(m.call_id, row);
    $("tool-rows").append(row);
    $("tools-empty").hidden = true;
    picture.toolCall(m.t_ms ?? picture.now(), m.call_id, m.name);
  },
  tool_result(m) {
    const row = state.tools.get(m.call_id);
    picture.toolResult(m.t_ms, m.call_id, m.ok, m.duration_ms, Boolean(m.mocked));
    if (!row) return;
    const cell = row.children[2];
    cell.textContent = (m.ok ? "" : "failed: ") + prettyJson(m.text);
    if (m.mocked) cell.append(tag("mocked"));
    if (!m.ok && !m.mocked && state.embedded) {
      // Offline, a tool that calls a web service fails; a mocks file answers instead.
      const hint = document.createElement("span");
      hint.className = "hint";
      const cmd = document.createElement("code");
      cmd.textContent = `${state.profile ?? "PROFILE"}.mocks.yaml`;
      hint.append("No network? A ", cmd, " file beside the profile or in its tools folder "
        + "answers its tool calls offline (vlrun serve --mock-tools FILE for any file).");
      cell.append(hint);
    }
    row.children[3].textContent = m.duration_ms.toFixed(0);
    row.dataset.ok = String(m.ok);
    if (m.mocked) row.dataset.mocked = "true";
  },
  timeline(m) {
    switch (m.event) {
      case "speech_started": picture.speechStarted(m.t_ms, m.item_id); waves.you.reset("speaking…", 8); break;
      case "speech_stopped": picture.speechStopped(m.t_ms, m.item_id); $("wave-you-note").textContent = ""; break;
      case "first_audio": picture.latency(m.t_ms, m.latency_ms); break;
      case "barge_in": picture.bargeIn(m.t_ms); break;
      case "node": picture.node(m.t_ms, m.node); break;
      case "yield": yielded(m.item_id); break;
      default: break;
    }
  },
  notice(m) { message("notice", m.text); },
  warning(m) { message("warning", m.text); },
  error(m) { message("error", m.text + (m.hint ? ` (hint: ${m.hint})` : "")); },
  refused(m) { message("error", m.text); say(m.text); setRunning(false); },
  async ended(m) {
    say(`Conversation ended (exit ${m.code}). Press Start for a new one.`);
    picture.running = false;
    picture.changed();
    await state.audio?.stop();
    state.audio = null;
    setRunning(false);
  },
};

async function onEvent(m) {
  window.vlrun.events.push(m.type);
  picture.stamp(m.t_ms);
  raw(m);
  const h = handlers[m.type];
  if (h) await h(m);
  window.dispatchEvent(new CustomEvent("vlrun-event", { detail: m }));
}

// The raw event table: every message but the streaming deltas (the transcript has them).
function raw(m) {
  if (m.type === "assistant_delta") return;
  const t = typeof m.t_ms === "number" ? m.t_ms : Math.round(picture.now());
  let kind = m.type;
  let detail = "";
  if (m.type === "timeline") {
    kind = m.event.replaceAll("_", " ");
    const parts = [];
    if (m.latency_ms !== undefined) parts.push(`${m.what}: ${m.latency_ms.toFixed(0)} ms`);
    if (m.audio_end_ms !== undefined) parts.push(`at ${m.audio_end_ms} ms`);
    if (m.node) parts.push(`now in ${m.node}`);
    if (m.detail) parts.push(m.detail);
    if (m.item_id) parts.push(m.item_id);
    detail = parts.join("; ");
  } else if (m.type === "hello") {
    detail = `${m.profiles.length} profiles; ${m.embedded ? "embedded emulator" : m.target}`;
  } else if (m.type === "session") {
    detail = `${m.conversation} ${m.profile ?? ""}; in ${m.input_rate} Hz, out ${m.output_rate} Hz`;
  } else if (m.type === "problems") {
    detail = `${m.profile}: ${m.problems.length} problem(s)`;
  } else {
    const shown = { ...m };
    delete shown.type; delete shown.t_ms;
    detail = JSON.stringify(shown);
  }
  const row = tr([String(t), kind, detail.length > 400 ? `${detail.slice(0, 399)}…` : detail]);
  row.dataset.type = m.type;
  if (m.type === "timeline") row.dataset.event = m.event;
  const body = $("timeline");
  body.append(row);
  while (body.children.length > RAW_ROWS) body.firstChild.remove();
  $("raw-count").textContent = `(${body.children.length})`;
}

function tr(cells) {
  const row = document.createElement("tr");
  for (const c of cells) { const td = document.createElement("td"); td.textContent = c; row.append(td); }
  return row;
}

function tag(text) {
  const span = document.createElement("span");
  span.className = "tag";
  span.textContent = text;
  return span;
}

// JSON shown indented (arguments, results); anything else as it came.
function prettyJson(text) {
  if (typeof text !== "string" || text.length > 4000) return String(text);
  try {
    const v = JSON.parse(text);
    return typeof v === "object" && v !== null ? JSON.stringify(v, null, 1) : text;
  } catch { return text; }
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

// GPT-Live stopped its reply for the caller (the model's choice, not a barge-in vlrun made)
function yielded(item) {
  state.yields++;
  const li = [...$("transcript").children].find((x) => x.dataset.item === item);
  if (!li) return;
  li.dataset.yielded = "true";
  const text = li.querySelector(".text");
  text.textContent = text.textContent.replace(/ \[interrupted\]$/, "") + " [yielded to you]";
}

// What this session takes: GPT-Live takes typed turns only with a delegation deployment,
// and no image turns; the controls say so instead of failing on Send.
function applyTurnKinds() {
  const running = !$("stop").disabled;
  $("text").disabled = !running || !state.typedTurns;
  $("send").disabled = !running || !state.typedTurns;
  $("text").placeholder = state.typedTurns ? TEXT_PLACEHOLDER
    : "This GPT-Live profile takes no typed turns (no delegation deployment): speak";
  $("image").disabled = !running || !state.images;
  $("image").title = state.images ? "" : "GPT-Live takes no image turns";
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
  $("image").disabled = !on;
  if (!on) clearImage();
  if (on) applyTurnKinds();
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
  $("tools-empty").hidden = false;
  $("raw-count").textContent = "(0)";
  state.streaming.clear();
  state.tools.clear();
  // until the session says what it takes (a GPT-Live profile may take fewer turn kinds)
  Object.assign(state, { duplex: false, typedTurns: true, images: true });
  picture.reset();
  waves.you.reset();
  waves.assistant.reset();
  send({ type: "start", profile: $("profile").value });
  setRunning(true);
  say("Starting…");
};
// The raw event table, one click away (hidden, not collapsed: its rows stay readable text).
$("raw-toggle").onclick = () => {
  const open = $("raw-panel").hidden;
  $("raw-panel").hidden = !open;
  $("raw-toggle").setAttribute("aria-expanded", String(open));
};
$("stop").onclick = () => send({ type: "stop", graceful: true });
$("talk").onclick = toggleTalk;
$("ptt").onchange = updateSending;
$("profile").onchange = showProfileMocks;
function clearImage() {
  $("image").value = "";
  $("image-chosen").hidden = true;
  $("image-chosen").textContent = "";
}

$("image").onchange = () => {
  const file = $("image").files[0];
  if (!file) { clearImage(); return; }
  const mb = (n) => `${(n / 1048576).toFixed(1)} MB`;
  if (file.size > state.maxImageBytes) {
    message("error", `${file.name} is ${mb(file.size)}, over the ${mb(state.maxImageBytes)} an image may be; scale it down`);
    clearImage();
    return;
  }
  $("image-chosen").textContent = `Image: ${file.name} (${mb(file.size)}); Send asks about it with the text, if any.`;
  $("image-chosen").hidden = false;
};

// An image turn: the file and the typed text (its question) as one upload; the server sends
// it after the reply in progress, and the transcript shows it like any turn.
async function sendImage(file, text) {
  const form = new FormData();
  form.append("image", file, file.name);
  if (text) form.append("text", text);
  try {
    const r = await fetch(withToken(`api/conversations/${state.conversation}/image`),
                          { method: "POST", body: form });
    if (r.status !== 202) {
      const body = await r.json().catch(() => ({ error: `the server answered ${r.status}` }));
      message("error", body.hint ? `${body.error} (${body.hint})` : body.error);
    }
  } catch (err) {
    message("error", `the image could not be sent (${err})`);
  }
}

$("typed").onsubmit = (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  const file = $("image").files[0];
  if (file && state.conversation) {
    sendImage(file, text);
    clearImage();
    $("text").value = "";
    return;
  }
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
