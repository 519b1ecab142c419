// The duty console: who is on duty, the live feed, and the pages by the address's #fragment.
import { ApiError, Live, api, errorText, h } from "./api.js";
import { Board } from "./board.js";
import { detailPage, historyPage, liftsPage, residentPage, residentsPage, taxiPage } from "./pages.js";

const view = document.getElementById("view");
let catalogue = {};
let board = null;
let live = null;
let me = null;

function loginPage(message = "") {
  const user = h("input", { id: "username", name: "username", autocomplete: "username", required: true });
  const pass = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const error = h("p", { class: "error", role: "alert" }, message);
  const form = h("form", { class: "login" }, h("h2", {}, "值班人员登录"), h("label", { for: "username" }, "用户名"), user,
    h("label", { for: "password" }, "密码"), pass, error, h("button", { class: "primary", type: "submit" }, "登录"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    try {
      await api("POST", "/session", { username: user.value, password: pass.value });
      await start();
    } catch (err) {
      error.textContent = err instanceof ApiError && err.status === 401 ? "用户名或密码错误" : errorText(err);
    }
  });
  document.getElementById("who").textContent = "";
  document.getElementById("logout").hidden = true;
  view.replaceChildren(form);
  user.focus();
}

async function start() {
  try {
    me = await api("GET", "/session");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) { loginPage(); return; }
    loginPage(errorText(err));
    return;
  }
  catalogue = await api("GET", "/catalogue");
  const roles = me.roles.map((r) => r.role_zh).join("、");
  document.getElementById("who").textContent = `值班：${me.name}（${roles}）`;
  document.getElementById("logout").hidden = false;
  board = new Board(catalogue);
  live = new Live(
    (msg) => board.merge(msg.alerts),
    async () => {
      const asked = board.asking();
      const data = await api("GET", "/alerts?state=active&limit=5000");
      board.snapshot(data.alerts, asked);
    },
    () => { if (location.hash.startsWith("#/taxi") && !document.activeElement.closest("#rides")) taxiPage(view); },
    catalogue.storage_trouble,
  );
  live.start();
  route();
}

function route() {
  if (!me) return;
  const [path, query] = (location.hash.slice(1) || "/").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("here", a.getAttribute("href") === "#/" + (parts[0] || ""));
  const q = new URLSearchParams(query || "");
  if (!parts.length) board.mount(view);
  else if (parts[0] === "alert") detailPage(view, parts[1], catalogue);
  else if (parts[0] === "residents") residentsPage(view);
  else if (parts[0] === "resident") residentPage(view, parts[1], parts[2], catalogue);
  else if (parts[0] === "lifts") liftsPage(view, catalogue);
  else if (parts[0] === "taxi") taxiPage(view);
  else if (parts[0] === "history") historyPage(view, catalogue, q);
  else board.mount(view);
}

document.getElementById("logout").addEventListener("click", async () => {
  try { await api("DELETE", "/session"); } catch (err) { /* the cookie is cleared either way */ }
  if (live && live.source) live.source.close();
  me = null;
  loginPage("已退出");
});
window.addEventListener("hashchange", route);
start();
