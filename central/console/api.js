// The console's link to the central: calls with the session cookie, errors in Chinese, and the live feed.
export const API = "/api/v1";
const TZ = "Asia/Shanghai";

export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

const CODE_ZH = {
  unauthorized: "请先登录（登录可能已过期）", forbidden: "您的角色无权进行此操作", not_found: "找不到这条记录",
  conflict: "状态已变化，请刷新后再试", rate_limited: "尝试次数过多，请稍后再试", invalid_body: "填写的内容有误",
  overloaded: "中心繁忙，请稍后重试", storage_error: "中心暂时无法保存，请稍后重试", server_error: "中心出错，请稍后重试",
};

// message shown to a person for a failed call: our typed refusal's code in Chinese, or the network failing
export function errorText(err) {
  if (err instanceof ApiError) return (CODE_ZH[err.code] || "操作失败") + (err.status === 409 ? "：" + err.message : "");
  return "无法连接中心，操作没有完成。请检查网络后重试，紧急情况请直接打电话。";
}

export async function api(method, path, body) {
  const options = { method, credentials: "same-origin", headers: { "X-Changbai-Console": "1" } };
  if (body !== undefined) { options.headers["Content-Type"] = "application/json"; options.body = JSON.stringify(body); }
  let reply;
  try { reply = await fetch(API + path, options); } catch (e) { throw new TypeError("network"); }
  const data = await reply.json().catch(() => null);
  if (!reply.ok) {
    const ours = data && data.schema === "changbai-error/1";
    throw new ApiError(reply.status, ours ? data.error : "http_" + reply.status, ours ? data.message : reply.statusText);
  }
  return data;
}

export function clock(t, withDate = false) {
  if (t === null || t === undefined) return "—";
  const opts = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false, timeZone: TZ };
  if (withDate) Object.assign(opts, { month: "2-digit", day: "2-digit" });
  return new Date(t * 1000).toLocaleString("zh-CN", opts);
}

export function span(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = String(m).padStart(2, "0"), ss = String(r).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

export function size(bytes) {
  return bytes >= 1024 ** 3 / 10 ? `${(bytes / 1024 ** 3).toFixed(1)} GB` : `${Math.round(bytes / 1024 ** 2)} MB`;
}

export function ago(seconds) {
  if (seconds < 60) return `${Math.floor(seconds)} 秒前`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} 分钟前`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} 小时前`;
  return `${Math.floor(seconds / 86400)} 天前`;
}

// h("div", {class: "x", onclick: f}, "text", child): a DOM element
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c);
  return el;
}

export function tel(contact) {
  const name = contact.name || contact;
  if (!contact.phone) return h("span", {}, String(name));
  const digits = contact.phone.replace(/[^0-9+]/g, "");
  return h("span", {}, `${name} `, h("a", { href: `tel:${digits}` }, contact.phone));
}

// The live feed: server-sent events; the banner when the central cannot be reached, with the last update's time,
// or when it says it cannot store what the nodes send (a full disk: their alarms wait on the nodes meanwhile).
export class Live {
  constructor(onAlerts, onHello, onPing, troubles = {}) {
    this.onAlerts = onAlerts; this.onHello = onHello; this.onPing = onPing;
    this.troubles = troubles; // the catalogue's storage_trouble: why the central cannot store, in words
    this.lastHeard = 0; this.lastUpdate = null; this.down = false; this.source = null; this.storage = null;
    setInterval(() => this.watch(), 1000);
  }
  start() {
    if (this.source) this.source.close();
    const source = new EventSource(API + "/stream", { withCredentials: true });
    this.source = source;
    source.addEventListener("hello", (e) => { this.heard(e); this.onHello(JSON.parse(e.data)); });
    source.addEventListener("alerts", (e) => { this.heard(e); this.onAlerts(JSON.parse(e.data)); });
    source.addEventListener("ping", (e) => { this.heard(e); this.onPing(JSON.parse(e.data)); });
    source.onerror = () => { this.setDown(true); };
  }
  heard(e) {
    const storage = JSON.parse(e.data).storage;
    if (storage) this.storage = storage;
    this.lastHeard = Date.now(); this.lastUpdate = Date.now() / 1000; this.setDown(false);
  }
  watch() {
    if (this.lastHeard && Date.now() - this.lastHeard > 15000) this.setDown(true);
    if (this.down) this.showBanner();
  }
  setDown(down) {
    const was = this.down;
    this.down = down;
    document.body.dataset.link = down ? "down" : "up";
    this.showBanner();
    if (!down) return;
    if (!was && this.source && this.source.readyState === EventSource.CLOSED) setTimeout(() => this.start(), 3000);
  }
  showBanner() {
    const banner = document.getElementById("banner");
    const failing = !this.down && this.storage && this.storage.state === "failing";
    const disk = this.storage && this.storage.disk, low = !this.down && !failing && disk && disk.low;
    document.body.dataset.storage = failing ? "failing" : low ? "low" : "ok";
    if (this.down) {
      const last = this.lastUpdate ? `最后更新 ${clock(this.lastUpdate)}（${ago(Date.now() / 1000 - this.lastUpdate)}）` : "尚未收到数据";
      banner.textContent = `⚠ 无法连接中心：下面的内容可能已过时。${last}。正在重连…`;
    } else if (failing) {
      const why = this.troubles[this.storage.reason] || this.troubles.other || "数据库出错";
      banner.textContent = `⚠ 中心无法保存数据（${why}，自 ${clock(this.storage.since)} 起）：各设备的新报警暂存在设备上并不断重传，` +
        "恢复之前不会出现在这里。请立即通知系统管理员；有人求助请直接打电话。";
    } else if (low) {
      banner.textContent = `⚠ 中心磁盘空间不足：只剩 ${size(disk.free_bytes)}（共 ${size(disk.size_bytes)}）。` +
        "磁盘满了以后，新的报警将无法保存。请通知系统管理员清理或扩容。";
    }
    banner.classList.toggle("low", Boolean(low));
    banner.hidden = !(this.down || failing || low);
    document.body.style.paddingTop = banner.hidden ? "" : banner.offsetHeight + "px"; // the fixed banner covers nothing
  }
}
