// The playground: edit a conversation, POST it to /v1/rewrite, show the result. No network beyond this server.
"use strict";

const EXAMPLE = [
  ["user", "Which is faster for numeric code, NumPy or plain Python loops?"],
  ["assistant", "NumPy is usually much faster, because its loops run in compiled C."],
  ["user", "Why is it faster?"],
];
const $ = (id) => document.getElementById(id);

function addTurn(role, content) {
  const row = document.createElement("div");
  row.className = "turn";
  const select = document.createElement("select");
  for (const r of ["user", "assistant", "system"]) {
    const opt = document.createElement("option");
    opt.value = opt.textContent = r;
    select.appendChild(opt);
  }
  select.value = role;
  const text = document.createElement("textarea");
  text.value = content || "";
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = "×";
  remove.title = "remove this turn";
  remove.onclick = () => row.remove();
  row.append(select, text, remove);
  $("turns").appendChild(row);
}

function turns() {
  return [...document.querySelectorAll(".turn")].map((row) => ({
    role: row.querySelector("select").value,
    content: row.querySelector("textarea").value,
  }));
}

function headers() {
  const h = { "Content-Type": "application/json" };
  if ($("key").value) h["Authorization"] = "Bearer " + $("key").value;
  return h;
}

async function loadModels() {
  try {
    const res = await fetch("/v1/models", { headers: headers() });
    const data = await res.json();
    if (!res.ok) throw new Error(data.error ? data.error.message : res.statusText);
    $("model").textContent = data.model + (data.default_adapter ? " + " + data.default_adapter : "");
    const select = $("adapter");
    select.innerHTML = "";
    // an adapter merged into the weights (the embedded default) leaves no bare model to pick
    const merged = data.adapters.some((a) => a.merged);
    const options = merged ? [["(default)", "__default__"]] : [["(default)", "__default__"], ["(none: bare model)", "__none__"]];
    for (const a of data.adapters) options.push([a.merged ? a.name + " (merged)" : a.name, a.name]);
    for (const [label, value] of options) {
      const opt = document.createElement("option");
      opt.textContent = label;
      opt.value = value;
      select.appendChild(opt);
    }
  } catch (err) {
    $("model").textContent = "model: " + err.message;
  }
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

async function rewrite() {
  $("error").hidden = true;
  const body = { options: { include_prompt: $("show-prompt").checked } };
  const all = turns();
  if ($("queries-only").checked) {
    body.queries = all.filter((t) => t.role === "user").map((t) => t.content);
    delete body.options.include_prompt;
  } else {
    body.messages = all;
  }
  const adapter = $("adapter").value;
  if (adapter === "__none__") body.adapter = null;
  else if (adapter && adapter !== "__default__") body.adapter = adapter;
  $("rewrite").disabled = true;
  try {
    const res = await fetch("/v1/rewrite", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    const data = await res.json();
    if (!res.ok) {
      showError(data.error ? data.error.type + ": " + data.error.message : res.statusText);
      return;
    }
    $("result").hidden = false;
    $("decision").textContent = data.decision;
    $("decision").className = "badge " + data.decision;
    $("reason").textContent = data.reason || "";
    $("query").textContent = data.query;
    $("rewritten").textContent = data.rewrite;
    const t = data.timings;
    $("timings").textContent =
      `${Math.round(t.total_ms)} ms · prompt ${t.prompt_tokens} tokens (${t.prompt_tokens_reused} reused) · ` +
      `${t.generated_tokens} generated · ${t.model_calls} model call(s)`;
    $("prompt").hidden = !data.prompt;
    $("prompt").textContent = data.prompt || "";
  } catch (err) {
    showError(err.message);
  } finally {
    $("rewrite").disabled = false;
  }
}

$("add-user").onclick = () => addTurn("user", "");
$("add-assistant").onclick = () => addTurn("assistant", "");
$("clear").onclick = () => { $("turns").innerHTML = ""; };
$("example").onclick = () => { $("turns").innerHTML = ""; EXAMPLE.forEach(([r, c]) => addTurn(r, c)); };
$("rewrite").onclick = rewrite;
$("key").onchange = loadModels;
EXAMPLE.forEach(([r, c]) => addTurn(r, c));
loadModels();
