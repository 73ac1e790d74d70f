// The playground's Workflow mode: a workflow definition (a file or pasted JSON) with its parameters as fields, run
// on the chosen image through POST /workflows/run, each output shown by name: images as images, detections drawn
// over the input image by the model mode's own draw(), anything else as JSON.
import { $, chosenImage, clearResult, draw, element, postJson, runners, showTimings } from "./playground.js";

const IMAGE_INPUTS = ["WorkflowImage", "InferenceImage"];
const PARAMETER_INPUTS = ["WorkflowParameter", "InferenceParameter"];
const FIELD_KINDS = { number: "number", boolean: "boolean", string: "text" }; // by the default's type; else JSON
const SHOWN_BASE64 = 200; // longer base64 images are cut short in the JSON view (the image itself is shown above)

let workflow = { specification: null, problem: "Load or paste a workflow definition first." };
let shownParameters = ""; // the parameter names and defaults the fields were built for
const redraws = new WeakMap(); // output image → its draw(), run again when the image changes size
const resized = new ResizeObserver((entries) => entries.forEach((entry) => redraws.get(entry.target)?.()));

// The definition in the text box, or why it cannot be run; a saved /workflows/run body is taken as its definition.
function readDefinition() {
  const text = $("workflow-definition").value.trim();
  workflow = { specification: null, problem: "Load or paste a workflow definition first." };
  if (text) {
    try {
      const parsed = JSON.parse(text);
      const specification = parsed && typeof parsed.specification === "object" ? parsed.specification : parsed;
      const isObject = specification && typeof specification === "object" && !Array.isArray(specification);
      workflow = isObject
        ? { specification, problem: "" }
        : { specification: null, problem: "The workflow definition must be a JSON object: version, inputs, steps, outputs." };
    } catch (error) {
      workflow = { specification: null, problem: `The workflow definition is not JSON: ${error.message}` };
    }
  }
  const { specification, problem } = workflow;
  $("workflow-info").textContent = specification ? describe(specification) : text ? problem : "";
  showParameters(specification ? inputsOf(specification, PARAMETER_INPUTS) : []);
}

function inputsOf(specification, types) {
  return (Array.isArray(specification.inputs) ? specification.inputs : []).filter(
    (input) => input && types.includes(input.type) && typeof input.name === "string",
  );
}

function describe(specification) {
  const count = (items, word) => `${items.length} ${word}${items.length === 1 ? "" : "s"}`;
  const images = inputsOf(specification, IMAGE_INPUTS).map((input) => input.name);
  const steps = Array.isArray(specification.steps) ? specification.steps : [];
  const outputs = Array.isArray(specification.outputs) ? specification.outputs : [];
  const fed = images.length ? `the image goes to ${images.join(", ")}` : "no image input";
  return `${count(steps, "step")} · ${count(outputs, "output")} · ${fed}`;
}

// One field per parameter, holding its default; rebuilt only when the names or defaults change, so typing in the
// definition keeps what was typed in the fields.
function showParameters(parameters) {
  const signature = JSON.stringify(parameters.map((input) => [input.name, input.default_value]));
  if (signature === shownParameters) return;
  shownParameters = signature;
  const box = $("workflow-parameters");
  const fields = parameters.flatMap((input, index) => parameterField(input, `workflow-parameter-${index}`));
  box.replaceChildren(box.querySelector("legend"), ...fields);
  box.hidden = !parameters.length;
}

function parameterField(input, id) {
  const value = input.default_value;
  const kind = FIELD_KINDS[typeof value] || "json";
  const field = Object.assign(document.createElement("input"), { id, name: input.name });
  field.dataset.kind = kind;
  const label = Object.assign(document.createElement("label"), { htmlFor: id, textContent: input.name });
  if (kind === "boolean") {
    Object.assign(field, { type: "checkbox", checked: value });
    label.className = "check";
    label.prepend(field);
    return [label];
  }
  Object.assign(field, kind === "number" ? { type: "number", step: "any" } : { type: "text" });
  field.value = value === undefined || value === null ? "" : kind === "json" ? JSON.stringify(value) : value;
  if (kind === "json") field.placeholder = value === undefined || value === null ? "no default (JSON)" : "JSON";
  return [label, field];
}

// The fields' values by parameter name; an empty field sends nothing, so the definition's default applies.
function parameterValues() {
  const values = {};
  for (const field of $("workflow-parameters").querySelectorAll("input")) {
    const text = field.value.trim();
    if (field.dataset.kind === "boolean") values[field.name] = field.checked;
    else if (!text) continue;
    else if (field.dataset.kind === "number") values[field.name] = Number(text);
    else if (field.dataset.kind === "text") values[field.name] = field.value;
    else {
      try {
        values[field.name] = JSON.parse(text);
      } catch (error) {
        throw new Error(`Parameter ${field.name} is not JSON: ${error.message}`);
      }
    }
  }
  return values;
}

async function runWorkflow() {
  readDefinition();
  const { specification, problem } = workflow;
  if (!specification) throw new Error(problem);
  const inputs = {};
  const images = inputsOf(specification, IMAGE_INPUTS);
  if (images.length) {
    const picture = chosenImage();
    for (const input of images) inputs[input.name] = picture;
  }
  Object.assign(inputs, parameterValues());
  const answer = await postJson("/workflows/run", { specification, inputs });
  const results = Array.isArray(answer.body.outputs) ? answer.body.outputs : [];
  $("json").textContent = JSON.stringify(answer.body, shortenImages, 2);
  const names = results.flatMap((outputs) => Object.keys(outputs));
  $("summary").textContent = names.length ? `Outputs: ${names.join(", ")}` : "The workflow gave no outputs.";
  showTimings(answer, [["outputs", String(names.length)]]);
  resized.disconnect();
  $("workflow-outputs").replaceChildren(
    ...results.flatMap((outputs) => Object.entries(outputs).map(([name, value]) => outputSection(name, value))),
  );
}

function shortenImages(key, value) {
  if (!isImage(value) || value.value.length <= SHOWN_BASE64) return value;
  return { ...value, value: `${value.value.slice(0, 40)}… (${value.value.length} characters of base64)` };
}

function isImage(value) {
  return Boolean(value) && value.type === "base64" && typeof value.value === "string";
}

// A model's answer ({image, predictions}) drawn over the input, when it is in the input's own pixels (a crop's is
// not: it shows as JSON).
function isDrawable(value) {
  if (!value || typeof value !== "object" || !value.image || !("predictions" in value)) return false;
  const preview = $("preview");
  const { width, height } = value.image;
  return !preview.naturalWidth || (width === preview.naturalWidth && height === preview.naturalHeight);
}

function hasPicture(value) {
  if (isImage(value) || isDrawable(value)) return true;
  return Boolean(value) && typeof value === "object" && Object.values(value).some(hasPicture);
}

function outputSection(name, value) {
  const section = Object.assign(document.createElement("section"), { className: "output" });
  section.dataset.output = name;
  section.append(Object.assign(document.createElement("h3"), { textContent: name }), outputNode(value));
  return section;
}

// Images and drawn answers as pictures, lists and objects holding some as one entry each, the rest as JSON.
function outputNode(value) {
  if (isImage(value)) {
    const src = `data:image/jpeg;base64,${value.value}`;
    return Object.assign(new Image(), { className: "output-image", alt: "", src });
  }
  if (isDrawable(value)) return drawnOver(value);
  if (hasPicture(value)) {
    const list = document.createElement("dl");
    for (const [key, item] of Object.entries(value)) {
      const name = Object.assign(document.createElement("dt"), { textContent: Array.isArray(value) ? `[${key}]` : key });
      const entry = document.createElement("dd");
      entry.append(outputNode(item));
      list.append(name, entry);
    }
    return list;
  }
  return Object.assign(document.createElement("pre"), { textContent: JSON.stringify(value, null, 2) });
}

function drawnOver(result) {
  const stage = Object.assign(document.createElement("div"), { className: "stage" });
  const picture = Object.assign(new Image(), { alt: "", src: $("preview").src });
  const overlay = element("svg", { class: "overlay" });
  stage.append(picture, overlay);
  const redraw = () => draw(result, overlay, picture);
  redraws.set(picture, redraw);
  resized.observe(picture);
  redraw();
  return stage;
}

function showMode(mode) {
  for (const section of document.querySelectorAll("[data-mode]")) {
    const hidden = !section.dataset.mode.split(" ").includes(mode);
    section.toggleAttribute("data-hidden-by-mode", hidden);
    section.disabled = hidden; // a hidden section's fields are neither checked nor sent
  }
  clearResult();
}

runners.workflow = runWorkflow;
document.addEventListener("DOMContentLoaded", () => {
  for (const choice of document.querySelectorAll("input[name=mode]")) {
    choice.addEventListener("change", () => showMode(choice.value));
  }
  showMode(document.querySelector("input[name=mode]:checked").value);
  $("workflow-definition").addEventListener("input", readDefinition);
  $("workflow-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    $("workflow-definition").value = await file.text();
    readDefinition();
  });
});
