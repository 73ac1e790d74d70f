// The playground: pick a model, send an image to its /infer route, draw the answer over the image.
// Plain browser JavaScript (an ES module, strict by itself), no build step and nothing loaded from elsewhere.
// workflow.js and stream.js add the Workflow and Stream modes with the helpers exported here.

const PALETTE = ["#4892EA", "#00EEC3", "#FE4EF0", "#F4004E", "#FA7200", "#EEEE17", "#90FF00", "#78C1D2", "#8C29FF"];
const SVG = "http://www.w3.org/2000/svg";
const KEY_STORAGE = "visionserve-api-key"; // sessionStorage: this tab only, gone when it closes
const LAST_MODEL_STORAGE = "visionserve-last-model"; // localStorage: the model chosen last, on this browser
const LABEL_PX = 13; // label text height on screen, in CSS pixels, whatever the image's size
const SHORT_CLASS_LIST = 10; // class lists up to this long show open under the model list; longer ones on a click

export const $ = (id) => document.getElementById(id);
let image = null; // {type, value} of the image to send
let catalog = new Map(); // model id → its catalog entry (class names stay here, not in the page)
let shown = null; // the last answer drawn, redrawn when the displayed image changes size
// What Run does in each mode (the checked input[name=mode]); workflow.js adds its own.
export const runners = { model: runModel };

export function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// Fetch JSON; a 401/403 opens the key form and a non-2xx answer throws the server's message. `policy403` marks a
// route whose 403 may be a policy's refusal (a stream URL) rather than the key's: only a 401 opens the form there.
export async function api(path, { policy403 = false, ...options } = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = { message: text || response.statusText };
  }
  if (response.status === 401 || (response.status === 403 && !policy403)) askForKey(body.message);
  if (!response.ok) throw new Error(`${response.status}: ${body.message || response.statusText}`);
  return { body, response };
}

function askForKey(message) {
  $("key-message").textContent = message || "This server needs an API key.";
  $("key-form").hidden = false;
  $("api-key").focus();
}

function useKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  $("forget-key").hidden = !key;
  if (key) $("key-form").hidden = true;
  $("api-key").value = "";
  loadModels();
}

export function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function loadModels() {
  const select = $("model");
  select.replaceChildren();
  catalog = new Map();
  showModel();
  try {
    const { body } = await api("/model/catalog");
    catalog = new Map(body.models.map((model) => [model.model_id, model]));
    // Names only: the task, source and classes of the chosen model show below the list.
    select.replaceChildren(
      ...body.models.map((model) => new Option(model.source === "memory" ? `${model.model_id} (memory only)` : model.model_id, model.model_id)),
    );
    select.value = firstChoice(body);
    if (!body.models.length) showError("No models yet: add one with `visionserve models add`.");
    else showError("");
    showModel();
  } catch (error) {
    showError(`Could not list the models. ${error.message}`);
  }
}

// The model chosen last, else the server's neutral built-in one, else any that is still stored.
function firstChoice(body) {
  const candidates = [localStorage.getItem(LAST_MODEL_STORAGE), body.default_model_id];
  const kept = body.models.find((model) => model.source !== "memory") || body.models[0];
  return candidates.find((id) => catalog.has(id)) || kept?.model_id || "";
}

export function selectedModel() {
  return catalog.get($("model").value);
}

function showModel() {
  const model = selectedModel();
  const info = [];
  if (model) {
    const line = (text) => Object.assign(document.createElement("span"), { textContent: text });
    info.push(line(`${model.task_type} · ${model.source}${model.loaded ? " · loaded" : ""}`));
    if (model.source === "memory") info.push(line("Memory only: removed from the store, this server holds it until it restarts."));
    const classes = Object.assign(document.createElement("details"), { open: model.class_names.length <= SHORT_CLASS_LIST });
    classes.append(Object.assign(document.createElement("summary"), { textContent: `${model.class_names.length} classes` }));
    classes.append(line(model.class_names.join(", ")));
    info.push(classes);
  }
  $("model-info").replaceChildren(...info);
  for (const element of document.querySelectorAll("[data-tasks]")) {
    element.toggleAttribute("data-hidden-by-task", !element.dataset.tasks.split(" ").includes(model?.task_type));
  }
}

function useFile(file) {
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => {
    // The base64 after the data: URL's comma: the server reads the bytes whatever type the browser guessed.
    const comma = reader.result.indexOf(",");
    image = { type: "base64", value: comma < 0 ? "" : reader.result.slice(comma + 1) };
    $("preview").src = reader.result;
    $("drop-text").textContent = file.name;
    $("url").value = "";
    clearResult();
  };
  reader.readAsDataURL(file);
}

export function clearResult() {
  shown = null;
  $("overlay").replaceChildren();
  $("workflow-outputs").replaceChildren();
  $("json").textContent = "";
  $("summary").textContent = "";
  $("timings").replaceChildren();
  showError("");
}

function requestBody(model) {
  const body = { model_id: model.model_id, image, ...taskOptions(model) };
  if (model.task_type === "keypoint-detection") body.keypoint_confidence = Number($("keypoint-confidence").value);
  return body;
}

// The Options that apply to the model's task, but for keypoint confidence (the Stream mode sends these too).
export function taskOptions(model) {
  const body = { confidence: Number($("confidence").value) };
  if (!["classification", "semantic-segmentation"].includes(model.task_type)) {
    body.iou_threshold = Number($("iou").value);
    body.max_detections = Number($("max-detections").value);
    body.class_agnostic_nms = $("agnostic").checked;
    const classes = $("class-filter").value.split(",").map((name) => name.trim()).filter(Boolean);
    if (classes.length) body.class_filter = classes;
  }
  return body;
}

// Run, in whichever mode: a mode's runner throws what the page should say (a missing input, the server's message).
async function run(event) {
  event.preventDefault();
  const url = $("url").value.trim();
  if (url) {
    image = { type: "url", value: url };
    $("preview").src = url;
  }
  clearResult();
  $("run").disabled = true;
  try {
    await runners[document.querySelector("input[name=mode]:checked")?.value || "model"]();
  } catch (error) {
    showError(error.message);
  } finally {
    $("run").disabled = false;
    revealResult();
  }
}

export function chosenImage() {
  if (!image) throw new Error("Choose, drop or link an image first.");
  return image;
}

// POST a JSON body; the answer with its round trip and request id, for showTimings.
export async function postJson(path, payload) {
  const started = performance.now();
  const { body, response } = await api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(payload),
  });
  return { body, roundTripMs: performance.now() - started, requestId: response.headers.get("X-Request-ID") };
}

async function runModel() {
  const model = selectedModel();
  if (!model) throw new Error("Choose a model first.");
  chosenImage();
  const request = requestBody(model);
  const answer = await postJson(model.infer_path, request);
  const { body } = answer;
  $("json").textContent = JSON.stringify(body, null, 2);
  $("summary").textContent = summary(body, request);
  showTimings(answer, [["server", `${(body.time * 1000).toFixed(1)} ms`], ["image", `${body.image.width}×${body.image.height}`]]);
  shown = body;
  draw(body);
}

// What the answer found, in words; an empty one says which setting held everything back.
function summary(result, request) {
  const above = `above confidence ${request.confidence.toFixed(2)}`;
  if (isSemantic(result)) { // the classes in the map, by name; 255 is a pixel of no class
    const { present_class_ids: ids, class_map: names } = result.predictions;
    return ids.map((id) => names[id] ?? `no class (under confidence ${request.confidence.toFixed(2)})`).join(", ");
  }
  if ("top" in result || !Array.isArray(result.predictions)) { // single- or multi-label classification
    const classes = "top" in result ? [result.top].filter(Boolean) : result.predicted_classes;
    return classes.length ? classes.join(", ") : `No class ${above}: lower the confidence under Options.`;
  }
  const found = result.predictions.length;
  if (found) return `${found} prediction${found === 1 ? "" : "s"}`;
  const among = request.class_filter ? ` among ${request.class_filter.join(", ")}` : "";
  return `No predictions ${above}${among}: lower the confidence under Options.`;
}

// On a phone the result sits below the form: bring it up once there is something to see.
function revealResult() {
  const top = $("result").getBoundingClientRect().top;
  if (top < 0 || top > innerHeight / 2) {
    const motion = matchMedia("(prefers-reduced-motion: reduce)").matches ? "auto" : "smooth";
    $("result").scrollIntoView({ behavior: motion, block: "start" });
  }
}

// A mode's own rows (name, value), then the round trip and request id of its `answer` (from postJson).
export function showTimings({ roundTripMs, requestId }, ownRows) {
  const rows = [...ownRows, ["round trip", `${roundTripMs.toFixed(1)} ms`]];
  if (requestId) rows.push(["request id", requestId]);
  $("timings").replaceChildren(
    ...rows.map(([name, value]) => {
      const row = document.createElement("div");
      row.append(Object.assign(document.createElement("dt"), { textContent: name }));
      row.append(Object.assign(document.createElement("dd"), { textContent: value, id: `timing-${name.replace(" ", "-")}` }));
      return row;
    }),
  );
}

export function element(name, attributes) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  return node;
}

function colour(classId) {
  return PALETTE[(Number.isInteger(classId) ? classId : 0) % PALETTE.length];
}

// Everything is drawn in the image's own pixels (the SVG's viewBox), so the JSON's coordinates are used as is;
// line widths and text sizes are scaled by the image pixels per CSS pixel, to look the same on any photo.
// `overlay` is an <svg> laid over `picture` (the model mode's, or a workflow output's).
export function draw(result, overlay = $("overlay"), picture = $("preview")) {
  const { width, height } = result.image;
  overlay.setAttribute("viewBox", `0 0 ${width} ${height}`);
  overlay.setAttribute("preserveAspectRatio", "none");
  const unit = width / (picture.getBoundingClientRect().width || width);
  const size = LABEL_PX * unit;
  const label = (text, x, y, fill) =>
    Object.assign(element("text", { x, y, fill, "font-size": size, "stroke-width": 3 * unit }), { textContent: text });
  const shapes = [];
  if (isSemantic(result)) {
    shapes.push(semanticLayer(result.predictions, width, height));
  } else if ("top" in result) {
    shapes.push(label(`${result.top || "no class above the threshold"} ${result.confidence.toFixed(2)}`, 4 * unit, 4 * unit + size, PALETTE[0]));
  } else if (!Array.isArray(result.predictions)) {
    shapes.push(label(result.predicted_classes.join(", ") || "no class above the threshold", 4 * unit, 4 * unit + size, PALETTE[0]));
  } else {
    for (const prediction of result.predictions) shapes.push(...drawObject(prediction, unit, size, label));
  }
  overlay.replaceChildren(...shapes);
  for (const text of overlay.querySelectorAll("text")) { // a label near the right edge moves left, inside the image
    const x = Number(text.getAttribute("x"));
    text.setAttribute("x", Math.max(0, Math.min(x, width - text.getComputedTextLength() - unit)));
  }
}

function isSemantic(result) {
  return !Array.isArray(result.predictions) && "segmentation_mask" in result.predictions;
}

// A semantic class map as an image over the photo: each class in its colour, half opaque; pixels of no class (255)
// and of a class named background stay clear. The PNG is grey, so each pixel's red value is its class id.
function semanticLayer(predictions, width, height) {
  const layer = element("image", { class: "semantic-map", x: 0, y: 0, width, height, preserveAspectRatio: "none" });
  const clear = new Set([255, ...Object.entries(predictions.class_map)
    .filter(([, name]) => name.toLowerCase() === "background").map(([id]) => Number(id))]);
  const map = new Image();
  map.onload = () => {
    const canvas = Object.assign(document.createElement("canvas"), { width: map.width, height: map.height });
    const context = canvas.getContext("2d");
    context.drawImage(map, 0, 0);
    const pixels = context.getImageData(0, 0, map.width, map.height);
    const rgb = PALETTE.map((hex) => [1, 3, 5].map((at) => parseInt(hex.slice(at, at + 2), 16)));
    for (let at = 0; at < pixels.data.length; at += 4) {
      const id = pixels.data[at];
      pixels.data.set(clear.has(id) ? [0, 0, 0, 0] : [...rgb[id % rgb.length], 128], at);
    }
    context.putImageData(pixels, 0, 0);
    layer.setAttribute("href", canvas.toDataURL());
  };
  map.src = `data:image/png;base64,${predictions.segmentation_mask}`;
  return layer;
}

function drawObject(prediction, unit, size, label) {
  const stroke = colour(prediction.class_id);
  const common = { stroke, "stroke-width": 2 * unit, fill: "none", "data-class": prediction.class };
  const shapes = [];
  const left = prediction.x - prediction.width / 2;
  const top = prediction.y - prediction.height / 2;
  if (prediction.points && prediction.points.length) {
    const points = prediction.points.map((point) => `${point.x},${point.y}`).join(" ");
    const isMask = !("angle" in prediction);
    shapes.push(element("polygon", { ...common, points, class: isMask ? "mask" : "oriented-box", ...(isMask ? { fill: stroke, "fill-opacity": 0.3 } : {}) }));
  }
  if (!("angle" in prediction)) {
    shapes.push(element("rect", { ...common, class: "box", x: left, y: top, width: prediction.width, height: prediction.height }));
  }
  shapes.push(label(`${prediction.class} ${prediction.confidence.toFixed(2)}`, left, Math.max(top - 4 * unit, size), stroke));
  for (const keypoint of prediction.keypoints || []) { // drawn last: no label hides them
    // Each keypoint in its own colour (apex, left, right...), ringed in white to stand out on any background.
    const fill = colour(keypoint.class_id + 1);
    shapes.push(element("circle", { class: "keypoint", cx: keypoint.x, cy: keypoint.y, r: 4 * unit, fill, stroke: "#fff", "stroke-width": unit }));
  }
  return shapes;
}

function setUpDropZone() {
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const name of ["dragleave", "drop"]) drop.addEventListener(name, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    useFile(event.dataTransfer.files[0]);
  });
  $("file").addEventListener("change", (event) => useFile(event.target.files[0]));
}

function setUpSliders() {
  for (const id of ["confidence", "iou", "keypoint-confidence"]) {
    const show = () => ($(`${id}-value`).textContent = Number($(id).value).toFixed(2));
    $(id).addEventListener("input", show);
    show();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setUpDropZone();
  setUpSliders();
  $("model").addEventListener("change", () => {
    localStorage.setItem(LAST_MODEL_STORAGE, $("model").value);
    showModel();
  });
  $("infer-form").addEventListener("submit", run);
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    useKey($("api-key").value.trim());
  });
  $("forget-key").addEventListener("click", () => useKey(""));
  new ResizeObserver(() => shown && draw(shown)).observe($("preview"));
  useKey(sessionStorage.getItem(KEY_STORAGE));
});
