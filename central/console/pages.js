// The pages besides the board: an alert's detail and timeline, residents, lifts, the taxi desk, history.
import { api, clock, errorText, h, span, tel } from "./api.js";
import { roleZh, siteName } from "./board.js";

const SEV_ZH = { urgent: "紧急", warning: "警告", info: "提示" };
const STATE_ZH = { open: "待处理", acknowledged: "已确认", resolved: "已解决" };

function failed(view, err) { view.replaceChildren(h("p", { class: "error", role: "alert" }, errorText(err))); }

// every step of an alert in time order: raised on the node, received, events, deliveries, link answers, actions
export function timeline(a, cat) {
  const steps = [[a.raised_at, "节点发出告警", "", false], [a.opened_at, "中心收到", "", false]];
  for (const l of a.log || []) {
    const what = { "event:raised": "节点再次报告", "event:updated": "节点更新", "event:cleared": "现场已解除（节点报告）",
      acknowledged: `确认：${l.by}`, resolved: `解决：${l.by}` }[l.action] || l.action;
    if (l.action === "event:raised" && Math.abs(l.at - a.opened_at) < 1) continue;
    steps.push([l.at, what, l.note || "", false]);
  }
  for (const d of a.deliveries || []) {
    const why = ((cat.delivery_reasons || {})[d.reason] || {}).zh, told = why ? `（${why}）` : "";
    for (const t of d.attempt_log || []) {
      const who = (d.recipients || []).map((c) => c.name).join("、");
      steps.push([t.at, `${t.ok ? "已送达" : "发送失败"}：${roleZh(cat, d.role)}${who ? "（" + who + "）" : ""} · ${d.channel}${told}`, t.ok ? "" : t.detail, !t.ok]);
    }
    if (d.ended_at && d.state === "dropped") steps.push([d.ended_at, `未发送：${roleZh(cat, d.role)} · ${d.channel}`, "告警已先解决，过时的提醒不再发出", false]);
    if (d.ended_at && d.state === "failed") steps.push([d.ended_at, `无法送达，不再重试：${roleZh(cat, d.role)} · ${d.channel}（请电话联系）`, d.last_error || "", true]);
  }
  for (const x of a.link_answers || []) steps.push([x.at, `${x.name}（${roleZh(cat, x.role)}）通过链接回复`, x.choice === "going" ? "我去看看" : "我已知晓", false]);
  steps.sort((x, y) => x[0] - y[0]);
  return h("ol", { class: "timeline", id: "timeline" }, steps.map(([t, what, note, bad]) =>
    h("li", { class: bad ? "bad" : "" }, h("time", {}, clock(t, true)), what, note ? ` —「${note}」` : "")));
}

export async function detailPage(view, id, cat) {
  let a;
  try { a = await api("GET", `/alerts/${id}`); } catch (err) { failed(view, err); return; }
  const contacts = Object.entries(a.contacts || {}).filter(([, p]) => p.length).map(([role, people]) =>
    h("li", {}, `${roleZh(cat, role)}：`, ...people.flatMap((c, i) => [i ? "、" : "", tel(c)])));
  view.replaceChildren(
    h("p", {}, h("a", { href: "#/" }, "← 返回告警")),
    h("h2", {}, `${SEV_ZH[a.severity]} · ${a.title_zh}`),
    h("p", {}, [a.location, a.flat && `住户 ${a.flat}`, siteName(cat, a.site)].filter(Boolean).join(" · "), " · ", STATE_ZH[a.state]),
    a.flat ? h("p", {}, h("a", { href: `#/resident/${a.site}/${encodeURIComponent(a.flat)}` }, "查看住户详情")) : "",
    h("h3", {}, "为什么报警"), h("ul", { class: "reasons", id: "reasons" }, (a.reasons || []).map((r) => h("li", {}, r))),
    h("h3", {}, "联系人"), h("ul", {}, contacts.length ? contacts : [h("li", {}, "未登记联系人")]),
    h("h3", {}, "经过"), timeline(a, cat));
}

function bars(points, width, height, label) {
  const vals = points.map((p) => p.litres), max = Math.max(1, ...vals.filter((v) => v !== null));
  const w = width / points.length;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 16}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  points.forEach((p, i) => {
    const r = document.createElementNS(svg.namespaceURI, "rect");
    const v = p.litres === null ? max * 0.04 : p.litres, bh = Math.max(1, (v / max) * height);
    r.setAttribute("x", String(i * w + 1)); r.setAttribute("width", String(Math.max(1, w - 2)));
    r.setAttribute("y", String(height - bh)); r.setAttribute("height", String(bh));
    r.setAttribute("class", p.litres === null ? "none" : "bar");
    const title = document.createElementNS(svg.namespaceURI, "title");
    title.textContent = `${clock(p.start, true)}：${p.litres === null ? "无数据" : p.litres + " 升"}`;
    r.append(title); svg.append(r);
  });
  const t = document.createElementNS(svg.namespaceURI, "text");
  t.setAttribute("x", "2"); t.setAttribute("y", String(height + 13)); t.textContent = `最高 ${Math.round(max)} 升`;
  svg.append(t);
  return svg;
}

export async function residentsPage(view) {
  let data;
  try { data = await api("GET", "/residents"); } catch (err) { failed(view, err); return; }
  view.replaceChildren(h("h2", {}, "独居老人住户"), data.residents.length ? h("div", { class: "scroll" }, h("table", {},
    h("thead", {}, h("tr", {}, ...["住户", "名称", "未解决告警", "可监护性", "摔倒后多久发现（夜/上午/下午/晚，小时）"].map((t) => h("th", {}, t)))),
    h("tbody", {}, data.residents.map((r) => h("tr", {},
      h("td", {}, h("a", { href: `#/resident/${r.site}/${encodeURIComponent(r.flat)}` }, r.flat)),
      h("td", {}, r.name || "—"), h("td", {}, String(r.open_alerts)), h("td", { class: watchClass(r.profile) }, watchText(r.profile)),
      h("td", {}, r.profile && r.profile.detect_h ? ["night", "morning", "afternoon", "evening"].map((k) => r.profile.detect_h[k] ?? "—").join(" / ") : "—")))))) :
    h("p", { class: "empty" }, "暂无住户记录"));
}

function watchText(p) {
  if (!p || p.adaptive === undefined) return "尚未收到用水规律";
  if (!p.adaptive) return `学习中（已 ${p.learned_days ?? 0} 天）`;
  return p.watchable ? "可以监护" : "不宜只靠水表：请增加每日电话或门磁";
}

function watchClass(p) { return p && p.adaptive && !p.watchable ? "error" : ""; }

export async function residentPage(view, site, flat, cat) {
  let r;
  try { r = await api("GET", `/residents/${site}/${encodeURIComponent(flat)}`); } catch (err) { failed(view, err); return; }
  const p = r.profile || {};
  const detect = p.detect_h ? ["night", "morning", "afternoon", "evening"].map((k, i) => `${["夜间", "上午", "下午", "晚上"][i]} ${p.detect_h[k] ?? "—"} 小时`).join("，") : "—";
  const watch = watchText(r.profile);
  const contacts = Object.entries(r.contacts || {}).map(([role, people]) => h("li", {}, `${roleZh(cat, role)}：`, ...people.flatMap((c, i) => [i ? "、" : "", tel(c)])));
  view.replaceChildren(
    h("h2", {}, `住户 ${r.flat}${r.name ? " · " + r.name : ""}`),
    h("div", { class: "grid" },
      h("div", { class: "card" }, h("h3", {}, "联系人（按住户）"), h("ul", {}, contacts.length ? contacts : [h("li", {}, "未登记：请管理员用“central flat set”登记")])),
      h("div", { class: "card" }, h("h3", {}, "用水情况"),
        h("p", { id: "last-use" }, `最后一次用水：${clock(r.water.last_use_at, true)}`),
        h("p", {}, `平时每天约 ${p.usual_daily_litres ?? "—"} 升；最长连续用水约 ${p.usual_longest_flow_min ?? "—"} 分钟`),
        h("p", {}, `最近一次读数：${clock(r.water.last_reading_at, true)}`)),
      h("div", { class: "card" }, h("h3", {}, "可监护性"), h("p", { id: "watchable" }, watch), h("p", {}, `摔倒后约多久能发现：${detect}`),
        h("p", { class: "muted" }, `用水规律更新于 ${clock(r.profile_at, true)}`)),
      h("div", { class: "card" }, h("h3", {}, "“我很好”按键与外出"),
        h("p", {}, r.ok_presses.length ? "最近按下：" + r.ok_presses.slice(-5).map((t) => clock(t, true)).join("，") : "最近没有按过"),
        h("p", {}, r.away.length ? "外出：" + r.away.map((x) => `${clock(x.at, true)} ${x.until ? "至 " + x.until : ""}`).join("；") : "没有外出记录")),
      checkInCard(r.check_ins)),
    h("h3", {}, "近 30 天每天用水（升）"), h("div", { id: "chart-daily" }, bars(r.water.daily, 620, 140, "近 30 天每天用水")),
    h("h3", {}, "近 48 小时每小时用水（升）"), h("div", { id: "chart-hourly" }, bars(r.water.hourly, 620, 140, "近 48 小时每小时用水")),
    h("p", { class: "muted" }, "灰色：没有读数（不是没用水）"),
    h("h3", {}, "告警"), alertTable(r.alerts));
}

const ASKED_ZH = { inactivity: "长时间未用水", missed_morning: "早上还没用水" };
const ANSWER_ZH = { answered: "已按“我很好”", told: "无人回应，已通知家属", ended: "随后有用水或开门，未通知家属", waiting: "等待回应" };

function checkInCard(c) {
  if (!c.recent.length) return "";  // never asked: a home without a chime and a button, or asking is off
  const rows = c.recent.slice(-5).reverse().map((x) => h("li", { "data-outcome": x.outcome },
    `${clock(x.at, true)} ${x.at_bedtime ? "睡前 " : ""}${ASKED_ZH[x.asked_for] || x.asked_for || "—"}：${ANSWER_ZH[x.outcome]}${x.outcome === "answered" ? `（${clock(x.outcome_at, true)}）` : ""}`));
  return h("div", { class: "card", id: "check-ins" }, h("h3", {}, "在家询问"),
    h("p", { class: "muted" }, "家属收到告警前，家中先响铃请老人按“我很好”；没人回应才通知家属"),
    h("p", {}, c.asked ? `近 ${c.days} 天询问 ${c.asked} 次，按键回答 ${c.answered} 次` : `近 ${c.days} 天没有询问`),
    rows.length ? h("ul", {}, rows) : "");
}

function alertTable(alerts) {
  if (!alerts.length) return h("p", { class: "empty" }, "没有告警");
  return h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, ...["时间", "类别", "级别", "状态", "处理"].map((t) => h("th", {}, t)))),
    h("tbody", {}, alerts.map((a) => h("tr", {}, h("td", {}, clock(a.raised_at, true)),
      h("td", {}, h("a", { href: `#/alert/${a.id}` }, a.title_zh)), h("td", {}, SEV_ZH[a.severity]), h("td", {}, STATE_ZH[a.state]),
      h("td", {}, a.resolved_by ? `${a.resolved_by}：${a.resolve_note || ""}` : a.acknowledged_by ? `${a.acknowledged_by}：${a.ack_note || ""}` : "—"))))));
}

export async function liftsPage(view, cat) {
  let alerts, nodes;
  try { [alerts, nodes] = await Promise.all([api("GET", "/alerts?state=all&limit=200"), api("GET", "/nodes?role=elevator&limit=5000")]); } catch (err) { failed(view, err); return; }
  const lifts = alerts.alerts.filter((a) => ((cat.kinds || {})[a.kind] || {}).group === "lift");
  const rows = lifts.map((a) => {
    const p = a.payload || {};
    const where = p.in_door_zone === false ? "两层之间" : p.in_door_zone === true ? "平层" : "不明";
    return h("tr", {}, h("td", {}, clock(a.raised_at, true)), h("td", {}, h("a", { href: `#/alert/${a.id}` }, a.title_zh)),
      h("td", {}, a.location || a.node_id), h("td", {}, a.kind === "entrapment" ? where : "—"),
      h("td", {}, p.seconds_trapped !== undefined ? span(p.seconds_trapped) : "—"),
      h("td", {}, a.acknowledged_by ? `${a.acknowledged_by}${a.ack_note ? "：" + a.ack_note : ""}` : "尚无人确认"), h("td", {}, STATE_ZH[a.state]));
  });
  const health = nodes.nodes.filter((n) => n.role === "elevator").map((n) => h("tr", {}, h("td", {}, n.location || n.node_id),
    h("td", { class: n.stale ? "error" : "" }, n.stale ? "失联" : "在线"), h("td", {}, clock(n.last_seen_at, true)),
    h("td", {}, String(n.seq_missing)), h("td", {}, (n.health || {}).version || "—")));
  view.replaceChildren(h("h2", {}, "电梯事件"), h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {},
    ...["时间", "事件", "位置", "平层/两层间", "被困时长", "谁在处理", "状态"].map((t) => h("th", {}, t)))), h("tbody", {}, rows))),
    h("h2", {}, "电梯设备状态"), h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {},
      ...["电梯", "连接", "最后联系", "丢失事件", "软件版本"].map((t) => h("th", {}, t)))), h("tbody", {}, health))));
}

export async function taxiPage(view) {
  let rides, nodes;
  try { [rides, nodes] = await Promise.all([api("GET", "/rides?limit=100"), api("GET", "/nodes?role=kiosk&limit=5000")]); } catch (err) { failed(view, err); return; }
  const kiosks = Object.fromEntries(nodes.nodes.map((n) => [n.node_id, n]));
  const ZH = { searching: "正在找车", assigned: "司机已接单", arrived: "车已到达", no_car: "无车可派", cancelled: "已取消" };
  const WHY = { no_car: "附近无车", provider_down: "调度平台连不上", provider_refused: "调度平台拒绝", no_answer: "调度平台无回应", lost: "记录丢失" };
  const order = (r) => (r.status === "no_car" ? 0 : r.status === "searching" ? 1 : 2);
  const sorted = [...rides.rides].sort((a, b) => order(a) - order(b) || b.requested_at - a.requested_at);
  const now = rides.server_time;
  view.replaceChildren(h("h2", {}, "叫车服务台"), h("div", { class: "scroll" }, h("table", { id: "rides" }, h("thead", {}, h("tr", {},
    ...["叫车屏", "尾号", "时间", "找车用时", "状态", "车辆", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, sorted.map((r) => {
      const searching = (r.assigned_at || r.no_car_at || r.cancelled_at || now) - r.requested_at;
      const car = r.assigned ? `${r.assigned.plate} ${r.assigned.colour_zh}${r.assigned.model_zh}` : "—";
      const cancel = ["searching", "assigned"].includes(r.status) ? h("button", { type: "button", onclick: async (e) => {
        e.target.disabled = true;
        try { await api("POST", `/rides/${r.ride_id}/cancel`, { reason: "服务台取消" }); taxiPage(view); } catch (err) { e.target.after(h("span", { class: "error" }, errorText(err))); }
      } }, "取消") : "";
      return h("tr", { class: r.status === "no_car" ? "nocar" : "" }, h("td", {}, (kiosks[r.node_id] || {}).location || r.pickup_point || r.node_id),
        h("td", {}, r.phone_tail || "—"), h("td", {}, clock(r.requested_at, true)), h("td", {}, span(searching)),
        h("td", {}, ZH[r.status] + (r.status === "no_car" ? `（${WHY[r.no_car_reason] || "无车"}）：请致电老人或派人协助` : "")),
        h("td", {}, car), h("td", {}, cancel));
    })))));
}

export async function historyPage(view, cat, query) {
  const form = h("form", { class: "filters" });
  const field = (name, label, control) => h("label", {}, label, control);
  const kinds = Object.entries(cat.kinds || {}).map(([k, v]) => h("option", { value: k, selected: query.get("kind") === k }, v.zh));
  const sel = (name, options) => h("select", { name }, h("option", { value: "" }, "全部"), options);
  form.append(field("kind", "类别", sel("kind", kinds)),
    field("severity", "级别", sel("severity", Object.entries(SEV_ZH).map(([k, v]) => h("option", { value: k, selected: query.get("severity") === k }, v)))),
    field("state", "状态", h("select", { name: "state" }, ...[["all", "全部"], ["resolved", "已解决"], ["active", "未解决"]].map(([k, v]) => h("option", { value: k, selected: (query.get("state") || "all") === k }, v)))),
    field("flat", "住户", h("input", { name: "flat", value: query.get("flat") || "", size: "10" })),
    field("since", "起始日期", h("input", { name: "since", type: "date", value: query.get("since") || "" })),
    h("button", { class: "primary", type: "submit" }, "查询"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams([...new FormData(form)].filter(([, v]) => v));
    location.hash = "#/history?" + q.toString();
  });
  const params = new URLSearchParams({ state: query.get("state") || "all", limit: "300" });
  for (const k of ["kind", "severity", "flat"]) if (query.get(k)) params.set(k, query.get(k));
  if (query.get("since")) params.set("since", String(Date.parse(query.get("since") + "T00:00:00+08:00") / 1000));
  const results = h("div", { id: "history" }, "正在查询…");
  view.replaceChildren(h("h2", {}, "告警历史"), form, results);
  try { results.replaceChildren(alertTable((await api("GET", "/alerts?" + params)).alerts)); } catch (err) { failed(results, err); }
}
