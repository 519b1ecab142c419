// The alert board: open and acknowledged alerts sorted by severity and acknowledgement, updated in place (a
// refresh never replaces a card, so focus, a note being typed and a text selection survive), with the cues of a
// new urgent alarm (sound, title, favicon) until it is acknowledged, and a running timer since it was raised. The
// nodes of one site gone silent together (a compound's network or power) share one card once there are
// `group_silent_min` of them, taken in and closed at once.
import { api, clock, errorText, h, span, tel } from "./api.js";

const SEV_RANK = { urgent: 0, warning: 1, info: 2 };
const SEV_ZH = { urgent: "紧急", warning: "警告", info: "提示" };
const STALE_ACK_S = 24 * 3600;
const LATE_S = 120;
const GROUPED = "node_silent";

export function rank(a) {
  const acked = a.state === "acknowledged" ? 1 : 0;
  return [acked, SEV_RANK[a.severity] ?? 3, -(a.raised_at || a.opened_at)];
}

function compare(a, b) {
  const x = rank(a), y = rank(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return b.id - a.id;
}

// a text changed only when it differs: a refresh leaves a selection in it alone
function setText(el, text) { if (el.textContent !== text) el.textContent = text; }

// the desk's note, which stays at the desk
function noteField() {
  return h("input", { type: "text", placeholder: "备注（只留在值班台，可不填）", "aria-label": "备注", maxlength: "500" });
}

export class Board {
  constructor(catalogue) {
    this.catalogue = catalogue;
    this.alerts = new Map(); // id -> alert view
    this.version = 0; // counts the changes merged
    this.touched = new Map(); // id -> the version of its last change, while a list asked for before it may arrive
    this.tickets = 0; // lists asked for
    this.applied = 0; // the newest list applied
    this.cards = new Map(); // id -> {root, parts}
    this.grouped = new Set(); // sites whose silent nodes are on one card now
    this.list = h("div", { id: "alerts" });
    this.summary = h("p", { id: "board-summary", class: "muted" });
    this.beeper = new Beeper();
    setInterval(() => this.tick(), 1000);
  }

  mount(view) {
    view.replaceChildren(h("h2", {}, "待处理告警"), this.summary, this.list);
    this.render();
  }

  // changed alerts, from the stream or from an action here: the newest word on each
  merge(alerts) {
    for (const a of alerts) {
      this.touched.set(a.id, ++this.version);
      this.put(a);
    }
    this.render();
  }

  put(a) {
    if (a.state === "resolved") this.alerts.delete(a.id);
    else this.alerts.set(a.id, a);
  }

  // before asking for the whole list: what the board had heard by then, to pass to snapshot() with the answer
  asking() { return { ticket: ++this.tickets, version: this.version }; }

  // the whole list of active alerts, asked for at `asked`: it replaces the board, except for the alerts the stream
  // changed while the answer was on its way (a card must not vanish, nor a resolved one come back, because the list
  // was read just before the change); an answer older than one already applied is dropped
  snapshot(alerts, asked) {
    if (asked.ticket <= this.applied) return;
    this.applied = asked.ticket;
    const since = (id) => (this.touched.get(id) || 0) > asked.version;
    const listed = new Set(alerts.map((a) => a.id));
    for (const id of [...this.alerts.keys()]) if (!listed.has(id) && !since(id)) this.alerts.delete(id);
    for (const a of alerts) if (!since(a.id)) this.put(a);
    for (const [id, v] of this.touched) if (v <= asked.version) this.touched.delete(id);
    document.body.dataset.snapshots = String(this.applied);
    this.render();
  }

  sorted() { return [...this.alerts.values()].sort(compare); }

  // the board's cards in order: an alert each, but the silent nodes of a site with group_silent_min or more of them
  // on one card, where the first of them would stand. A group stays one until its last node leaves the board:
  // closed one call at a time, its last few never become cards of their own for a moment
  items(wanted) {
    const least = this.catalogue.group_silent_min || 0, bySite = new Map(), out = [], placed = new Set();
    for (const a of wanted) if (a.kind === GROUPED) bySite.set(a.site, [...(bySite.get(a.site) || []), a]);
    for (const site of this.grouped) if (!bySite.has(site) || !least) this.grouped.delete(site);
    for (const [site, members] of bySite) if (least && members.length >= least) this.grouped.add(site);
    for (const a of wanted) {
      if (a.kind !== GROUPED || !this.grouped.has(a.site)) out.push({ key: a.id, alert: a });
      else if (!placed.has(a.site)) { placed.add(a.site); out.push({ key: `silent:${a.site}`, members: bySite.get(a.site) }); }
    }
    return out;
  }

  render() {
    const started = performance.now();
    const wanted = this.sorted(), items = this.items(wanted), keys = new Set(items.map((i) => i.key));
    for (const [key, card] of this.cards) if (!keys.has(key)) { card.root.remove(); this.cards.delete(key); }
    for (const item of items) {
      let card = this.cards.get(item.key);
      if (!card) { card = item.alert ? this.build(item.alert) : this.buildGroup(item.key); this.cards.set(item.key, card); }
      if (item.alert) this.update(card, item.alert); else this.updateGroup(card, item.members);
    }
    this.order(items.map((i) => this.cards.get(i.key).root));
    const open = wanted.filter((a) => a.state === "open");
    this.summary.textContent = wanted.length
      ? `共 ${wanted.length} 条，其中 ${open.length} 条尚无人确认（紧急 ${open.filter((a) => a.severity === "urgent").length} 条）`
      : "目前没有待处理的告警。";
    this.cues(open.filter((a) => a.severity === "urgent"));
    document.body.dataset.renderMs = String(Math.round(performance.now() - started));
  }

  // put the cards in order, moving only those out of place, and never while someone works inside the list
  order(roots) {
    const active = document.activeElement;
    const selecting = !document.getSelection().isCollapsed && this.list.contains(document.getSelection().anchorNode);
    const typing = active && this.list.contains(active) && active.tagName === "INPUT";
    const current = [...this.list.children];
    const same = current.length === roots.length && current.every((el, i) => el === roots[i]);
    if (same) return;
    if ((typing || selecting) && current.length) {
      for (const r of roots) if (!r.isConnected) this.list.append(r);
      this.deferred = true;
      return;
    }
    roots.forEach((root, i) => { if (this.list.children[i] !== root) this.list.insertBefore(root, this.list.children[i] || null); });
    this.deferred = false;
  }

  build(a) {
    const p = {};
    p.sev = h("span", { class: "sev" });
    p.title = h("h3", {});
    p.where = h("span", {});
    p.state = h("span", {});
    p.onsite = h("span", { class: "onsite" });
    p.lasted = h("span", {}, "已持续 ");
    p.timer = h("span", { class: "timer" });
    p.target = h("span", {});
    p.late = h("div", { class: "late" });
    p.reasons = h("ul", { class: "reasons" });
    p.told = h("div", { class: "muted" });
    p.contacts = h("div", { class: "contacts" });
    p.note = noteField();
    // what a resolution tells the people already told (the family reads it): shown only where it reaches someone
    p.tell = h("input", { type: "text", class: "tell", maxlength: "500", hidden: "" });
    p.ack = h("button", { class: "primary", type: "button", onclick: () => this.act(a.id, "ack", p) }, "确认（我来处理）");
    p.resolve = h("button", { type: "button", onclick: () => this.act(a.id, "resolve", p) }, "已解决");
    p.detail = h("a", { href: `#/alert/${a.id}`, class: "button" }, "详情");
    p.error = h("div", { class: "error", role: "alert" });
    const root = h("article", { class: "card", "data-alert": a.id, "data-shown-at": String(Date.now() / 1000) },
      h("div", { class: "top" }, p.sev, p.title, p.state, p.onsite),
      h("div", {}, p.where), h("div", {}, p.lasted, p.timer, " ", p.target), p.late, p.reasons, p.told, p.contacts,
      h("div", { class: "actions" }, p.note, p.tell, p.ack, p.resolve, p.detail), p.error);
    return { root, parts: p };
  }

  update(card, a) {
    const p = card.parts;
    card.root.className = `card ${a.severity} ${a.state}`;
    card.root.dataset.severity = a.severity;
    card.root.dataset.state = a.state;
    p.sev.className = `sev ${a.severity}`;
    setText(p.sev, SEV_ZH[a.severity] || a.severity);
    setText(p.title, a.title_zh || a.kind);
    setText(p.where, [a.location, a.flat && `住户 ${a.flat}`, siteName(this.catalogue, a.site)].filter(Boolean).join(" · "));
    const stale = a.state === "acknowledged" && Date.now() / 1000 - a.acknowledged_at > STALE_ACK_S;
    setText(p.state, a.state === "acknowledged" ? `已由 ${a.acknowledged_by} 确认 ${clock(a.acknowledged_at, true)}` + (stale ? "（已很久未解决）" : "") : "尚无人确认");
    p.state.className = stale ? "stale" : a.state === "acknowledged" ? "state-ack" : "";
    setText(p.onsite, a.cleared_on_site ? `现场已解除 ${clock(a.cleared_at, true)}` : "");
    const late = a.opened_at - a.raised_at > LATE_S;
    setText(p.late, late ? `节点 ${clock(a.raised_at, true)} 发出，中心 ${clock(a.opened_at, true)} 才收到（晚 ${span(a.opened_at - a.raised_at)}）` : "");
    const reasons = (a.reasons || []).join("\n");
    if (p.reasons.dataset.text !== reasons) {
      p.reasons.dataset.text = reasons;
      p.reasons.replaceChildren(...(a.reasons || []).slice(0, 4).map((r) => h("li", {}, r)));
    }
    const told = Object.entries(a.told || {}).map(([role, t]) => `${roleZh(this.catalogue, role)} ${clock(t.at)}（${t.channel}）`);
    const pending = (a.escalation && a.escalation.state === "pending") ? `；${a.escalation.roles.map((r) => roleZh(this.catalogue, r)).join("、")} 将于 ${clock(a.escalation.due_at)} 通知（若无人确认）` : "";
    const lost = (a.deliveries || []).filter((d) => d.state === "failed" && !(a.told || {})[d.role]).map((d) => `；${roleZh(this.catalogue, d.role)}（${d.channel}）无法送达，请电话联系`);
    setText(p.told, (told.length ? "已通知：" + told.join("；") : "尚未送达任何通知") + lost.join("") + pending);
    const contactKey = JSON.stringify(a.contacts || {});
    if (p.contacts.dataset.key !== contactKey) {
      p.contacts.dataset.key = contactKey;
      p.contacts.replaceChildren(...Object.entries(a.contacts || {}).filter(([, people]) => people.length).map(([role, people]) =>
        h("div", {}, `${roleZh(this.catalogue, role)}：`, ...people.flatMap((c, i) => [i ? "、" : "", tel(c)]))));
    }
    p.ack.hidden = a.state !== "open";
    const reach = (a.resolution_tells || []).map((r) => roleZh(this.catalogue, r)).join("、");
    p.tell.hidden = !reach;
    const ask = reach ? `解决时告诉${reach}的话（会发给他们，可不填）` : "";
    if (p.tell.placeholder !== ask) { p.tell.placeholder = ask; p.tell.setAttribute("aria-label", ask); }
    this.tickOne(card, a);
  }

  buildGroup(key) {
    const p = {};
    p.sev = h("span", { class: "sev warning" }, SEV_ZH.warning);
    p.title = h("h3", {});
    p.state = h("span", {});
    p.where = h("span", {});
    p.lasted = h("span", {}, "已持续 ");
    p.timer = h("span", { class: "timer" });
    p.which = h("div", {});
    p.hint = h("div", {}, "这么多台同时失联，多半是这一片的网络或供电中断：请先检查小区的网络和电源");
    p.list = h("ul", { class: "reasons" });
    p.places = h("details", {}, h("summary", {}, "逐台查看"), p.list);
    p.told = h("div", { class: "muted" });
    p.note = noteField();
    p.ack = h("button", { class: "primary", type: "button", onclick: () => this.actAll(key, "ack", p) }, "全部确认（我来处理）");
    p.resolve = h("button", { type: "button", onclick: () => this.actAll(key, "resolve", p) }, "已恢复的全部标为已解决");
    p.error = h("div", { class: "error", role: "alert" });
    const root = h("article", { class: "card warning", "data-group": key, "data-severity": "warning" },
      h("div", { class: "top" }, p.sev, p.title, p.state), h("div", {}, p.where), h("div", {}, p.lasted, p.timer),
      p.which, p.hint, p.places, p.told, h("div", { class: "actions" }, p.note, p.ack, p.resolve), p.error);
    return { root, parts: p, members: [] };
  }

  // how many of which kind, how many taken in and back, and each one by its place (a link to its own page)
  updateGroup(card, members) {
    const p = card.parts;
    card.members = members;
    const open = members.filter((a) => a.state === "open"), back = members.filter((a) => a.cleared_on_site);
    const counts = new Map();
    for (const a of members) { const r = (a.payload || {}).role || a.role; counts.set(r, (counts.get(r) || 0) + 1); }
    const names = this.catalogue.node_roles || {};
    card.root.className = `card warning ${open.length ? "open" : "acknowledged"}`;
    card.root.dataset.state = open.length ? "open" : "acknowledged";
    setText(p.title, `设备失联 · ${members.length} 台设备`);
    setText(p.state, open.length ? `尚无人确认 ${open.length} 台` : "已全部确认");
    setText(p.where, siteName(this.catalogue, members[0].site));
    setText(p.which, "同时没有任何消息：" + [...counts].map(([r, n]) => `${names[r] || "设备"} ${n} 台`).join("、") +
      (back.length ? `；现场已恢复 ${back.length} 台` : ""));
    p.hint.hidden = back.length === members.length;
    const told = new Map();
    for (const a of members) for (const role of Object.keys(a.told || {})) told.set(role, (told.get(role) || 0) + 1);
    setText(p.told, told.size ? "已通知：" + [...told].map(([r, n]) => `${roleZh(this.catalogue, r)}（${n === members.length ? "全部" : `${n} 台`}）`).join("；") : "尚未送达任何通知");
    const place = (a) => a.location || a.node_id;
    const rows = [...members].sort((x, y) => place(x).localeCompare(place(y)));
    const listKey = rows.map((a) => `${a.id}:${a.state}:${a.cleared_on_site}`).join(",");
    if (p.list.dataset.key !== listKey) {
      p.list.dataset.key = listKey;
      p.list.replaceChildren(...rows.map((a) => h("li", {}, h("a", { href: `#/alert/${a.id}` }, place(a)),
        a.cleared_on_site ? " · 已恢复" : a.state === "acknowledged" ? ` · 已由 ${a.acknowledged_by} 确认` : "")));
    }
    p.ack.hidden = !open.length;
    p.resolve.hidden = !back.length;
    this.tickGroup(card);
  }

  tickGroup(card) {
    const since = Math.min(...card.members.map((a) => a.raised_at || a.opened_at));
    card.parts.timer.textContent = span(Date.now() / 1000 - since);
  }

  // acknowledge every one not yet taken in, or close every one heard again, one call each (a 409: another desk
  // was quicker, said with the rest)
  async actAll(key, action, p) {
    const card = this.cards.get(key);
    const members = (card ? card.members : []).filter((a) => (action === "ack" ? a.state === "open" : a.cleared_on_site));
    p.error.textContent = "";
    p.ack.disabled = p.resolve.disabled = true;
    const done = [], failed = [];
    for (const a of members) {
      try {
        done.push(await api("POST", `/alerts/${a.id}/${action}`, { note: p.note.value }));
      } catch (err) {
        failed.push(`${a.location || a.node_id}：${errorText(err)}`);
      }
    }
    if (!failed.length) p.note.value = "";
    this.merge(done);
    p.error.textContent = failed.join("；");
    p.ack.disabled = p.resolve.disabled = false;
  }

  tickOne(card, a) {
    // over on site: how long it lasted, and no arrival target counting down (the passenger is out)
    const over = a.cleared_on_site && a.cleared_at ? a.cleared_at : null;
    const since = (over ?? Date.now() / 1000) - a.raised_at;
    card.parts.lasted.textContent = over ? "持续了 " : "已持续 ";
    card.parts.timer.textContent = span(since);
    const target = over ? null : (this.catalogue.targets_min || {})[a.kind];
    card.parts.target.textContent = target ? (since < target * 60 ? `（${target} 分钟到场目标，还剩 ${span(target * 60 - since)}）` : `（已超过 ${target} 分钟到场目标）`) : "";
  }

  tick() {
    for (const a of this.alerts.values()) { const card = this.cards.get(a.id); if (card) this.tickOne(card, a); }
    for (const card of this.cards.values()) if (card.members) this.tickGroup(card);
    if (this.deferred && !(document.activeElement && this.list.contains(document.activeElement))) this.render();
  }

  async act(id, action, p) {
    p.error.textContent = "";
    p.ack.disabled = p.resolve.disabled = true;
    try {
      const body = action === "resolve" && !p.tell.hidden ? { note: p.note.value, tell: p.tell.value } : { note: p.note.value };
      const done = await api("POST", `/alerts/${id}/${action}`, body);
      p.note.value = p.tell.value = "";
      this.merge([done]);
    } catch (err) {
      p.error.textContent = errorText(err);
    } finally {
      p.ack.disabled = p.resolve.disabled = false;
    }
  }

  cues(urgentOpen) {
    const n = urgentOpen.length;
    document.title = n ? `【紧急 ${n}】未确认 · 值班台` : "值班台 · 长白新村";
    document.getElementById("favicon").href = n ? "/console/icon-alarm.svg" : "/console/icon-ok.svg";
    document.body.dataset.alarm = n ? "on" : "off";
    if (n) this.beeper.start(); else this.beeper.stop();
  }
}

export function siteName(catalogue, site) {
  return ((catalogue.sites || {})[site]) || site;
}

export function roleZh(catalogue, role) {
  return ((catalogue.roles || {})[role] || {}).zh || role;
}

// a two-tone beep every 2 s while an urgent alarm waits for someone (Web Audio: no file, no download)
class Beeper {
  constructor() { this.timer = null; this.ctx = null; document.body.dataset.beeps = "0"; }
  start() {
    if (this.timer) return;
    this.beep();
    this.timer = setInterval(() => this.beep(), 2000);
  }
  stop() { clearInterval(this.timer); this.timer = null; }
  beep() {
    document.body.dataset.beeps = String(Number(document.body.dataset.beeps) + 1);
    try {
      this.ctx = this.ctx || new AudioContext();
      if (this.ctx.state === "suspended") this.ctx.resume();
      [880, 660].forEach((f, i) => {
        const osc = this.ctx.createOscillator(), gain = this.ctx.createGain();
        osc.frequency.value = f; gain.gain.value = 0.2;
        osc.connect(gain).connect(this.ctx.destination);
        const t = this.ctx.currentTime + i * 0.25;
        osc.start(t); osc.stop(t + 0.2);
      });
    } catch (e) { /* no audio device: the title and the icon still say it */ }
  }
}
