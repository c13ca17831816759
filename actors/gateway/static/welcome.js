// Fills the welcome page's device table (scanners, then cameras): their modules start on
// demand, so the list comes after the page (a same-origin GET needs no session).
const body = document.querySelector("#devices tbody");

function row(cells, className) {
  const tr = document.createElement("tr");
  cells.forEach((text, i) => {
    const td = document.createElement("td");
    td.textContent = text;
    if (i === cells.length - 1 && className) td.className = `state ${className}`;
    tr.append(td);
  });
  return tr;
}

async function listDevices() {
  try {
    const response = await fetch("/api/v1/sources");
    const answer = await response.json();
    if (!response.ok) throw new Error(`${answer.error.code}: ${answer.error.message}`);
    body.replaceChildren(...answer.map((s) => s.type === "camera"
      ? row([s.id, s.type, s.kind, s.name, s.open ? "open" : "ready"], "ready")
      : row([s.id, s.type, s.vendor, s.model, s.busy ? "busy" : "ready"], s.busy ? "busy" : "ready")));
    if (!answer.length) body.replaceChildren(row(["no device found (see scanbridge doctor)"]));
  } catch (error) {
    body.replaceChildren(row([`devices not available: ${error.message}`], "error"));
  }
}

listDevices();
