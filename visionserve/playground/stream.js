// The playground's Stream mode: a video (uploaded to the server, or a URL or server path) through the chosen model
// as a server-side pipeline, its annotated frames shown live from the pipeline's Server-Sent Events, its FPS,
// latency and dropped frames from its status, polled every second. EventSource cannot send the API key header, so
// the feed is read with fetch() and parsed here. Stop, leaving the mode or closing the page terminates the pipeline.
import { $, api, authHeaders, runners, selectedModel, showError, taskOptions } from "./playground.js";

const STATUS_MS = 1000;
const NONE = "–";

let current = null; // the running stream: {id, controller, terminated, shown, report}
let uploading = Promise.resolve(); // Start waits for a video still being uploaded

// Send the chosen file to the server, which answers the path a pipeline reads it from; that path becomes the
// video reference, so what Start sends is always in sight.
async function upload(file) {
  const info = $("stream-info");
  info.textContent = `Uploading ${file.name} (${megabytes(file.size)})…`;
  showError("");
  try {
    const { body } = await api(`/inference_pipelines/uploads?filename=${encodeURIComponent(file.name)}`, {
      method: "POST",
      headers: { "Content-Type": file.type || "application/octet-stream" },
      body: file,
    });
    $("stream-reference").value = body.video_reference;
    info.textContent = `Uploaded ${file.name}: the server keeps its latest uploads for streams.`;
  } catch (error) {
    info.textContent = "";
    showError(`Could not upload ${file.name}. ${error.message}`);
  }
}

// The summary line, unless the page has left this mode meanwhile (another mode's result shows there now).
function say(text) {
  if (document.querySelector("input[name=mode]:checked")?.value === "stream") $("summary").textContent = text;
}

function megabytes(bytes) {
  return `${(bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0)} MB`;
}

async function runStream() {
  await uploading;
  const model = selectedModel();
  if (!model) throw new Error("Choose a model first.");
  const reference = $("stream-reference").value.trim();
  if (!reference) throw new Error("Choose a video, or give its URL or path, first.");
  const request = { model_id: model.model_id, video_reference: reference, track: $("stream-track").checked };
  Object.assign(request, taskOptions(model));
  const maxFps = Number($("stream-max-fps").value);
  if (maxFps > 0) request.max_fps = maxFps;
  const { body } = await api("/inference_pipelines/initialise", {
    method: "POST",
    policy403: true, // a URL or path the server's policy refuses is a 403 too: its message is shown, no key asked
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(request),
  });
  const stream = { id: body.context.pipeline_id, controller: new AbortController(), terminated: false, shown: 0 };
  current = stream;
  $("stream-stop").disabled = false;
  $("stream-frame").removeAttribute("src");
  say("Streaming…");
  showStats(stream);
  const polling = setInterval(() => poll(stream), STATUS_MS);
  try {
    const end = await readFeed(stream);
    await poll(stream); // the final figures
    const said = `${stream.shown} frame${stream.shown === 1 ? "" : "s"} shown`;
    say(`The stream ended (${end?.state || "feed closed"}): ${said}.`);
    if (end?.state === "ERROR") throw new Error(stream.report?.last_error || "The pipeline failed.");
  } catch (error) {
    if (!stream.controller.signal.aborted) throw error;
    say(`Stopped: ${stream.shown} frame${stream.shown === 1 ? "" : "s"} shown.`);
  } finally {
    clearInterval(polling);
    terminate(stream);
    if (current === stream) current = null;
    $("stream-stop").disabled = true;
  }
}

// The pipeline's events until its `end` event (returned) or the feed closes (null); each result is shown.
async function readFeed(stream) {
  const response = await fetch(`/inference_pipelines/${stream.id}/events?images=true`, {
    headers: authHeaders(),
    signal: stream.controller.signal,
  });
  if (!response.ok) {
    const text = await response.text();
    let message = text;
    try {
      message = JSON.parse(text).message || text;
    } catch {} // not JSON: the text as it came
    throw new Error(`${response.status}: ${message || response.statusText}`);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return null;
    buffer = (buffer + value).replace(/\r\n?/g, "\n");
    for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
      const event = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event.type === "result" && event.data) showResult(stream, JSON.parse(event.data));
      else if (event.type === "end") return event.data ? JSON.parse(event.data) : {};
    }
  }
}

// One SSE block: its `event:` name and its `data:` lines joined; `:` comments (keep-alives) count for nothing.
function parseEvent(block) {
  const event = { type: "message", data: "" };
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event.type = value;
    else if (field === "data") data.push(value);
  }
  event.data = data.join("\n");
  return event;
}

function showResult(stream, result) {
  if (result.image) $("stream-frame").src = `data:image/jpeg;base64,${result.image}`;
  stream.shown += 1;
  const { image, ...rest } = result;
  $("json").textContent = JSON.stringify(rest, null, 2);
  $("stream-shown").textContent = String(stream.shown);
}

async function poll(stream) {
  if (stream.terminated) return;
  try {
    const { body } = await api(`/inference_pipelines/${stream.id}/status`);
    stream.report = body.report;
  } catch {
    return; // stopped meanwhile (404), or the server is gone: the feed says so
  }
  if (!stream.terminated) showStats(stream);
}

function showStats(stream) {
  const source = stream.report?.sources?.[0] || {};
  const latency = source.latency_p50_s;
  const rows = [
    ["state", "state", stream.report?.state || "STARTING"],
    ["fps", "FPS", typeof source.fps === "number" ? source.fps.toFixed(1) : NONE],
    ["latency", "latency p50", typeof latency === "number" ? `${(latency * 1000).toFixed(1)} ms` : NONE],
    ["dropped", "frames dropped", String(source.frames_dropped ?? 0)],
    ["read", "frames read", String(source.frames_read ?? 0)],
    ["shown", "frames shown", String(stream.shown)],
    ["pipeline", "pipeline id", stream.id],
  ];
  $("timings").replaceChildren(
    ...rows.map(([id, name, value]) => {
      const row = document.createElement("div");
      row.append(Object.assign(document.createElement("dt"), { textContent: name }));
      row.append(Object.assign(document.createElement("dd"), { textContent: value, id: `stream-${id}` }));
      return row;
    }),
  );
}

// Best effort, and it outlives the page: keepalive lets the request finish while the page closes, and unlike
// sendBeacon it carries the key header.
function terminate(stream) {
  if (stream.terminated) return;
  stream.terminated = true;
  const init = { method: "POST", keepalive: true, headers: authHeaders() };
  fetch(`/inference_pipelines/${stream.id}/terminate`, init).catch(() => {});
}

function stop() {
  if (!current) return;
  current.controller.abort();
  terminate(current);
}

function showMode(mode) {
  if (mode !== "stream") stop();
  $("run").textContent = mode === "stream" ? "Start" : "Run";
}

runners.stream = runStream;
document.addEventListener("DOMContentLoaded", () => {
  for (const choice of document.querySelectorAll("input[name=mode]")) {
    choice.addEventListener("change", () => showMode(choice.value));
  }
  showMode(document.querySelector("input[name=mode]:checked").value);
  $("stream-stop").addEventListener("click", stop);
  $("stream-file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) uploading = upload(file);
  });
  addEventListener("pagehide", stop);
});
