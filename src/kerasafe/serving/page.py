"""``GET /``: one page, no external files: drop images (or pick them), see each labelled in a grid.

It posts the images to ``/predict`` as multipart and draws a card per answer: the
image, its label and score, the runners-up; errors show as the server worded them.
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kerasafe: {{NAME}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
 #drop { border: 2px dashed #888; border-radius: 8px; padding: 2rem; text-align: center; cursor: pointer; }
 #drop.over { background: #eef; border-color: #44a; }
 #grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(140px, 1fr)); gap: 1rem; margin-top: 1.5rem; }
 .result { border: 1px solid #ccc; border-radius: 6px; padding: .5rem; text-align: center; }
 .result img { width: 100%; height: 110px; object-fit: contain; image-rendering: pixelated; background: #f4f4f4; }
 .label { font-weight: bold; font-size: 1.2rem; } .score, .top { color: #666; font-size: .8rem; }
 #error { color: #a00; margin-top: 1rem; }
</style></head>
<body>
<h1>{{NAME}}</h1>
<p>Drop images here to label them with this model (<a href="/docs">API</a>, <a href="/metrics">metrics</a>).</p>
<label id="drop">Drop images, or click to choose
 <input id="files" type="file" accept="image/*" multiple hidden></label>
<div id="error" role="alert"></div>
<div id="grid"></div>
<script>
const drop = document.getElementById("drop"), input = document.getElementById("files");
const grid = document.getElementById("grid"), error = document.getElementById("error");
async function label(files) {
  error.textContent = "";
  if (!files.length) return;
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  let answer;
  try {
    const response = await fetch("/predict", {method: "POST", body: form});
    answer = await response.json();
    if (!response.ok) { error.textContent = answer.error || response.statusText; return; }
  } catch (e) { error.textContent = String(e); return; }
  answer.predictions.forEach((p, i) => {
    const card = document.createElement("div"); card.className = "result";
    const img = document.createElement("img"); img.src = URL.createObjectURL(files[i]); img.alt = p.input;
    const name = document.createElement("div"); name.className = "label"; name.textContent = p.label;
    const score = document.createElement("div"); score.className = "score"; score.textContent = p.score.toFixed(3) + " " + p.input;
    const top = document.createElement("div"); top.className = "top";
    top.textContent = p.top.slice(1).map(t => t[0] + " " + t[1].toFixed(2)).join(", ");
    card.append(img, name, score, top); grid.prepend(card);
  });
}
drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", e => { e.preventDefault(); drop.classList.remove("over"); label([...e.dataTransfer.files]); });
input.addEventListener("change", () => label([...input.files]));
</script></body></html>
"""
