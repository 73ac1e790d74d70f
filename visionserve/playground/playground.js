// The playground: pick a model, send an image to its /infer route, draw the answer over the image.
// Plain browser JavaScript, no build step and nothing loaded from elsewhere.
"use strict";

const PALETTE = ["#4892EA", "#00EEC3", "#FE4EF0", "#F4004E", "#FA7200", "#EEEE17", "#90FF00", "#78C1D2", "#8C29FF"];
const SVG = "http://www.w3.org/2000/svg";
const KEY_STORAGE = "visionserve-api-key";

const $ = (id) => document.getElementById(id);
let image = null; // {type, value} of the image to send

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// Fetch JSON; a 401/403 opens the key form and a non-2xx answer throws the server's message.
async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = { message: text || response.statusText };
  }
  if (response.status === 401 || response.status === 403) askForKey(body.message);
  if (!response.ok) throw new Error(`${response.status}: ${body.message || response.statusText}`);
  return { body, response };
}

function askForKey(message) {
  $("key-message").textContent = message || "This server needs an API key.";
  $("key-form").hidden = false;
  $("api-key").focus();
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function loadModels() {
  const select = $("model");
  try {
    const { body } = await api("/model/catalog");
    select.replaceChildren(
      ...body.models.map((model) => {
        const option = new Option(`${model.model_id} · ${model.task_type} (${model.loaded ? "loaded" : model.source})`, model.model_id);
        option.dataset.path = model.infer_path;
        option.dataset.task = model.task_type;
        return option;
      }),
    );
    if (!body.models.length) showError("No models yet: add one with `visionserve models add`.");
    else showError("");
    showTaskOptions();
  } catch (error) {
    showError(`Could not list the models. ${error.message}`);
  }
}

function selectedModel() {
  return $("model").selectedOptions[0];
}

function showTaskOptions() {
  const task = selectedModel()?.dataset.task;
  for (const element of document.querySelectorAll("[data-tasks]")) {
    element.toggleAttribute("data-hidden-by-task", !element.dataset.tasks.split(" ").includes(task));
  }
}

function useFile(file) {
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => {
    image = { type: "base64", value: reader.result }; // a data: URL, which the server accepts as base64
    $("preview").src = reader.result;
    $("drop-text").textContent = file.name;
    $("url").value = "";
    clearResult();
  };
  reader.readAsDataURL(file);
}

function clearResult() {
  $("overlay").replaceChildren();
  $("json").textContent = "";
  $("timings").replaceChildren();
  showError("");
}

function requestBody(model) {
  const body = { model_id: model.value, image, confidence: Number($("confidence").value) };
  if (model.dataset.task !== "classification") {
    body.iou_threshold = Number($("iou").value);
    body.max_detections = Number($("max-detections").value);
    body.class_agnostic_nms = $("agnostic").checked;
    const classes = $("class-filter").value.split(",").map((name) => name.trim()).filter(Boolean);
    if (classes.length) body.class_filter = classes;
  }
  if (model.dataset.task === "keypoint-detection") body.keypoint_confidence = Number($("keypoint-confidence").value);
  return body;
}

async function run(event) {
  event.preventDefault();
  const model = selectedModel();
  const url = $("url").value.trim();
  if (url) {
    image = { type: "url", value: url };
    $("preview").src = url;
  }
  if (!model) return showError("Choose a model first.");
  if (!image) return showError("Choose, drop or link an image first.");
  clearResult();
  $("run").disabled = true;
  const started = performance.now();
  try {
    const { body, response } = await api(model.dataset.path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(requestBody(model)),
    });
    const roundTrip = performance.now() - started;
    $("json").textContent = JSON.stringify(body, null, 2);
    showTimings(body, roundTrip, response.headers.get("X-Request-ID"));
    draw(body);
  } catch (error) {
    showError(error.message);
  } finally {
    $("run").disabled = false;
  }
}

function showTimings(result, roundTripMs, requestId) {
  const rows = [
    ["server", `${(result.time * 1000).toFixed(1)} ms`],
    ["round trip", `${roundTripMs.toFixed(1)} ms`],
    ["image", `${result.image.width}×${result.image.height}`],
  ];
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

function element(name, attributes) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  return node;
}

function colour(classId) {
  return PALETTE[(Number.isInteger(classId) ? classId : 0) % PALETTE.length];
}

// Everything is drawn in the image's own pixels (the SVG's viewBox), so the JSON's coordinates are used as is.
function draw(result) {
  const { width, height } = result.image;
  const overlay = $("overlay");
  overlay.setAttribute("viewBox", `0 0 ${width} ${height}`);
  overlay.setAttribute("preserveAspectRatio", "none");
  const unit = Math.max(width, height) / 400; // line and text sizes that stay readable at any image size
  const label = (text, x, y, fill) =>
    Object.assign(element("text", { x, y, fill, "font-size": 11 * unit, "stroke-width": 3 * unit }), { textContent: text });
  const shapes = [];
  if ("top" in result) {
    shapes.push(label(`${result.top || "no class above the threshold"} ${result.confidence.toFixed(2)}`, 4 * unit, 14 * unit, PALETTE[0]));
  } else if (!Array.isArray(result.predictions)) {
    shapes.push(label(result.predicted_classes.join(", ") || "no class above the threshold", 4 * unit, 14 * unit, PALETTE[0]));
  } else {
    for (const prediction of result.predictions) shapes.push(...drawObject(prediction, unit, label));
  }
  overlay.replaceChildren(...shapes);
}

function drawObject(prediction, unit, label) {
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
  shapes.push(label(`${prediction.class} ${prediction.confidence.toFixed(2)}`, left, Math.max(top - 3 * unit, 11 * unit), stroke));
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
  $("model").addEventListener("change", showTaskOptions);
  $("infer-form").addEventListener("submit", run);
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
    $("key-form").hidden = true;
    loadModels();
  });
  loadModels();
});
