// The monitoring page's behaviour: labels in Arabic or English, and the
// figures from the /api/events stream (server-sent events), re-rendered on
// every snapshot without reloading. No framework, no build step, nothing
// fetched from elsewhere. Data is written with textContent only, never as
// HTML: crisis titles come from operators and alerts.
"use strict";

const T = {
  en: {
    title: "Sumud — monitoring", heading: "Monitoring", other_language: "العربية",
    connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", updated: "Updated",
    crises: "Crises", crisis: "Crisis", state: "State", revision: "Revision", budget: "Budget",
    committed: "Committed", paid: "Paid", budget_use: "Budget use", since_alert: "Since alert",
    no_crises: "No crisis yet.", funnels: "Funnel per crisis",
    areas: "Caseload and payments by area", area: "Area",
    entitled_households: "Households entitled", entitled_amount: "Entitled",
    paid_instructions: "Payments made", failed_instructions: "Failed payments", failed: "Failed",
    providers: "Payment providers", provider: "Provider", instructions: "Instructions",
    open: "Open", overdue: "Overdue", ack_p50: "Acknowledged in (median)", ack_p95: "(95%)",
    rejection_rate: "Rejected", top_reasons: "Main reasons",
    dead_letters: "Dead letters", reason: "Reason", service: "Service", count: "Count", last_at: "Last",
    consumer_lag: "Consumer lag", topic: "Topic", lag: "Behind", stalled: "Stalled for",
    affected: "Affected", eligible: "Eligible", waitlisted: "Waitlisted", instructed: "Instructed",
    in_flight: "In flight", households: "households", payments: "payments",
    pending_approval: "awaiting approval", no_alert: "declared by an operator",
    field_tasks: "open field visits", none: "None", not_read: "Not available",
    held: "payments held: outcome unknown, awaiting the provider", incidents: "payment incidents to resolve",
    pass_failing: "scheduler passes failing", pass_failed: "scheduler passes failed before",
    state_proposed: "Proposed", state_active: "Active", state_closed: "Closed",
    grievances: "Grievances by area", not_included: "Not included", wrong_amount: "Wrong amount",
    not_received: "Not received", under_1_day: "Under a day", from_1_to_7_days: "1–7 days",
    over_7_days: "Over 7 days", answered: "Answered",
    referrals: "Social-service referrals by area", referred: "Awaiting answer", accepted: "Accepted",
    served: "Served", declined: "Declined",
    s: "s", m: "min", h: "h", d: "d",
  },
  ar: {
    title: "صمود — لوحة المتابعة", heading: "لوحة المتابعة", other_language: "English",
    connecting: "جارٍ الاتصال…", live: "مباشر", reconnecting: "إعادة الاتصال…", updated: "آخر تحديث",
    crises: "الأزمات", crisis: "الأزمة", state: "الحالة", revision: "المراجعة", budget: "الميزانية",
    committed: "الملتزم به", paid: "المدفوع", budget_use: "استخدام الميزانية", since_alert: "منذ الإنذار",
    no_crises: "لا توجد أزمات بعد.", funnels: "مسار كل أزمة",
    areas: "الحالات والمدفوعات حسب المنطقة", area: "المنطقة",
    entitled_households: "الأسر المستحقة", entitled_amount: "المستحق",
    paid_instructions: "الدفعات المنفذة", failed_instructions: "الدفعات الفاشلة", failed: "الفاشل",
    providers: "مزودو الدفع", provider: "المزود", instructions: "أوامر الدفع",
    open: "مفتوحة", overdue: "متأخرة", ack_p50: "زمن الإقرار (الوسيط)", ack_p95: "(٩٥٪)",
    rejection_rate: "نسبة الرفض", top_reasons: "أهم الأسباب",
    dead_letters: "الرسائل المرفوضة", reason: "السبب", service: "الخدمة", count: "العدد", last_at: "الأخيرة",
    consumer_lag: "تأخر المستهلكين", topic: "الموضوع", lag: "متأخر بـ", stalled: "متوقف منذ",
    affected: "المتأثرون", eligible: "المؤهلون", waitlisted: "قائمة الانتظار", instructed: "صدرت أوامرهم",
    in_flight: "قيد التنفيذ", households: "أسرة", payments: "دفعة",
    pending_approval: "بانتظار الموافقة", no_alert: "أعلنها مشغّل",
    field_tasks: "زيارات ميدانية مفتوحة", none: "لا شيء", not_read: "غير متاح",
    held: "دفعات معلّقة: النتيجة مجهولة، بانتظار رد المزود", incidents: "حوادث دفع تحتاج إلى معالجة",
    pass_failing: "جولات جدولة فاشلة", pass_failed: "جولات جدولة فشلت سابقًا",
    state_proposed: "مقترحة", state_active: "نشطة", state_closed: "مغلقة",
    grievances: "الشكاوى حسب المنطقة", not_included: "لم تُشمل", wrong_amount: "مبلغ خاطئ",
    not_received: "لم تُستلم", under_1_day: "أقل من يوم", from_1_to_7_days: "١–٧ أيام",
    over_7_days: "أكثر من ٧ أيام", answered: "تمت الإجابة",
    referrals: "الإحالات إلى الخدمات الاجتماعية حسب المنطقة", referred: "بانتظار الرد", accepted: "مقبولة",
    served: "تمت الخدمة", declined: "مرفوضة",
    s: "ث", m: "د", h: "س", d: "ي",
  },
};

const STAGES = ["affected", "eligible", "waitlisted", "instructed", "in_flight", "paid", "failed"];

let lang = document.documentElement.lang === "ar" ? "ar" : "en";
let last = null;

function t(key) {
  return (T[lang] && T[lang][key]) || T.en[key] || key;
}

function locale() {
  return lang === "ar" ? "ar-JO" : "en-GB";
}

function fmtInt(n) {
  return n === null || n === undefined ? "—" : new Intl.NumberFormat(locale()).format(n);
}

function fmtMoney(minor, currency) {
  if (minor === null || minor === undefined) return "—";
  let f;
  try {
    f = new Intl.NumberFormat(locale(), { style: "currency", currency: currency });
  } catch (e) {
    return fmtInt(minor) + " " + currency;
  }
  const digits = f.resolvedOptions().maximumFractionDigits;
  return f.format(minor / Math.pow(10, digits));
}

function fmtPercent(x) {
  return x === null || x === undefined
    ? "—"
    : new Intl.NumberFormat(locale(), { style: "percent", maximumFractionDigits: 1 }).format(x);
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "—";
  if (s < 10) return new Intl.NumberFormat(locale(), { maximumFractionDigits: 2 }).format(s) + " " + t("s");
  return fmtDuration(Math.round(s));
}

function fmtDuration(total) {
  const d = Math.floor(total / 86400), h = Math.floor((total % 86400) / 3600);
  const m = Math.floor((total % 3600) / 60), s = total % 60;
  const part = (n, u) => fmtInt(n) + " " + t(u);
  if (d > 0) return part(d, "d") + " " + part(h, "h");
  if (h > 0) return part(h, "h") + " " + part(m, "m");
  if (m > 0) return part(m, "m") + " " + part(s, "s");
  return part(s, "s");
}

function fmtTime(iso) {
  if (!iso) return "—";
  return new Intl.DateTimeFormat(locale(), { dateStyle: "short", timeStyle: "medium" }).format(new Date(iso));
}

// el("td", {class: "num", "data-field": "paid"}, "12") → <td class="num" data-field="paid">12</td>
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function applyLanguage() {
  const root = document.documentElement;
  root.lang = lang;
  root.dir = lang === "ar" ? "rtl" : "ltr";
  for (const e of document.querySelectorAll("[data-i18n]")) {
    if (e.id === "live") continue; // its text follows the connection state
    e.textContent = t(e.getAttribute("data-i18n"));
  }
  document.title = t("title");
  setLive(document.getElementById("live").getAttribute("data-state"));
  if (last) render(last);
}

function setLive(state) {
  const live = document.getElementById("live");
  live.setAttribute("data-state", state);
  live.textContent = t(state);
}

function sinceAlert(c, now) {
  if (!c.alert) return t("no_alert");
  const secs = Math.max(0, Math.round((now - Date.parse(c.alert.sent_at)) / 1000));
  return fmtDuration(secs);
}

function renderCrises(snap, now) {
  const rows = snap.crises.map((c) => {
    const used = c.budget_minor > 0 ? (c.funnel.paid.amount_minor || 0) / c.budget_minor : 0;
    const committed = c.budget_minor > 0 && c.committed_minor !== null ? c.committed_minor / c.budget_minor : 0;
    const meter = el("div", { class: "meter", title: fmtPercent(committed) },
      el("span", { class: "committed", style: "inline-size:" + Math.min(100, committed * 100).toFixed(1) + "%" }),
      el("span", { class: "used", style: "inline-size:" + Math.min(100, used * 100).toFixed(1) + "%" }));
    return el("tr", { "data-crisis": c.crisis_id },
      el("td", {},
        el("strong", { "data-field": "crisis-id" }, c.crisis_id), el("br"),
        el("span", { class: "muted" }, c.title)),
      el("td", { "data-field": "state", "data-value": c.state },
        el("span", { class: "state state-" + c.state }, t("state_" + c.state)),
        c.pending_approval ? el("span", { class: "muted" }, " · " + t("pending_approval")) : null),
      el("td", { class: "num", "data-field": "revision", "data-value": c.revision }, fmtInt(c.revision)),
      el("td", { class: "num", "data-field": "budget", "data-value": c.budget_minor }, fmtMoney(c.budget_minor, c.currency)),
      el("td", { class: "num", "data-field": "committed", "data-value": c.committed_minor }, fmtMoney(c.committed_minor, c.currency)),
      el("td", { class: "num", "data-field": "paid-amount", "data-value": c.funnel.paid.amount_minor },
        fmtMoney(c.funnel.paid.amount_minor, c.currency)),
      el("td", {}, meter, el("span", { class: "muted" }, fmtPercent(used))),
      el("td", { "data-field": "since-alert" }, sinceAlert(c, now)));
  });
  fill(document.querySelector("#crises tbody"), rows);
  document.getElementById("crises-empty").hidden = snap.crises.length > 0;
}

function renderFunnels(snap) {
  const cards = snap.crises.map((c) => {
    const top = Math.max(1, ...STAGES.map((s) => c.funnel[s].households));
    const list = el("ol", { class: "funnel" }, ...STAGES.map((s) => {
      const st = c.funnel[s];
      const count = st.instructions === null ? st.households : st.instructions;
      const unit = st.instructions === null ? t("households") : t("payments");
      return el("li", { class: "stage stage-" + s },
        el("span", { class: "label" }, t(s)),
        el("span", { class: "track" }, el("span", { style: "inline-size:" + (100 * st.households / top).toFixed(1) + "%" })),
        el("span", { class: "num", "data-field": s + "-count", "data-value": count }, fmtInt(count) + " " + unit),
        el("span", { class: "num", "data-field": s + "-amount", "data-value": st.amount_minor },
          st.amount_minor === null ? "" : fmtMoney(st.amount_minor, c.currency)));
    }));
    return el("article", { class: "card", "data-crisis": c.crisis_id },
      el("h3", {}, c.crisis_id + " · ", el("span", { class: "state state-" + c.state }, t("state_" + c.state))),
      list,
      c.field_tasks_open > 0 ? el("p", { class: "muted" }, fmtInt(c.field_tasks_open) + " " + t("field_tasks")) : null,
      ...attention(c));
  });
  document.getElementById("funnels").replaceChildren(...cards);
}

// What needs a payment-operations lead on this crisis: held payments,
// incidents, failing scheduler passes (with the last error as a tooltip).
function attention(c) {
  const a = c.attention;
  const out = [];
  if (a.held > 0) {
    out.push(el("p", { class: "warn", "data-field": "held", "data-value": a.held },
      fmtInt(a.held) + " " + t("held") + " (" + fmtMoney(a.held_minor, c.currency) + ")"));
  }
  if (a.incidents_open > 0) {
    out.push(el("p", { class: "warn", "data-field": "incidents", "data-value": a.incidents_open },
      fmtInt(a.incidents_open) + " " + t("incidents")));
  }
  if (a.pass_failures > 0) {
    const failing = a.last_pass_error !== null;
    out.push(el("p", { class: failing ? "warn" : "muted", "data-field": "pass-failures",
      "data-value": a.pass_failures, title: a.last_pass_error || "" },
      fmtInt(a.pass_failures) + " " + t(failing ? "pass_failing" : "pass_failed")));
  }
  return out;
}

function renderAreas(snap) {
  const rows = snap.areas.map((a) => el("tr", { class: "level-" + a.level, "data-area": a.code },
    el("td", {}, lang === "ar" ? a.name_ar : a.name_en, " ", el("span", { class: "muted code" }, a.code)),
    el("td", { class: "num", "data-value": a.entitled_households }, fmtInt(a.entitled_households)),
    el("td", { class: "num", "data-value": a.entitled_minor }, fmtMoney(a.entitled_minor, a.currency)),
    el("td", { class: "num", "data-value": a.paid_instructions }, fmtInt(a.paid_instructions)),
    el("td", { class: "num", "data-value": a.paid_minor }, fmtMoney(a.paid_minor, a.currency)),
    el("td", { class: "num", "data-value": a.failed_instructions }, fmtInt(a.failed_instructions)),
    el("td", { class: "num", "data-value": a.failed_minor }, fmtMoney(a.failed_minor, a.currency))));
  fill(document.querySelector("#areas tbody"), rows);
}

function renderGrievances(snap) {
  const num = (v, alarm) => el("td", { class: "num" + (alarm && v > 0 ? " alarm" : ""), "data-value": v }, fmtInt(v));
  const rows = snap.grievances.map((g) => el("tr", { "data-area": g.code },
    el("td", {}, lang === "ar" ? g.name_ar : g.name_en, " ", el("span", { class: "muted code" }, g.code)),
    num(g.open), num(g.not_included), num(g.wrong_amount), num(g.not_received),
    num(g.under_1_day), num(g.from_1_to_7_days), num(g.over_7_days, true), num(g.answered)));
  fill(document.querySelector("#grievances tbody"), rows);
}

function renderReferrals(snap) {
  const num = (v, alarm) => el("td", { class: "num" + (alarm && v > 0 ? " alarm" : ""), "data-value": v }, fmtInt(v));
  const rows = (snap.referrals || []).map((r) => el("tr", { "data-area": r.code, "data-service": r.service },
    el("td", {}, lang === "ar" ? r.name_ar : r.name_en, " ", el("span", { class: "muted code" }, r.code)),
    el("td", {}, r.service, " ", el("span", { class: "muted" }, r.provider)),
    num(r.referred, true), num(r.accepted), num(r.served), num(r.declined)));
  fill(document.querySelector("#referrals tbody"), rows);
}

function renderProviders(snap) {
  const rows = snap.providers.map((p) => el("tr", { "data-provider": p.provider },
    el("td", {}, p.provider),
    el("td", { class: "num" }, fmtInt(p.instructions)),
    el("td", { class: "num" }, fmtInt(p.open_instructions)),
    el("td", { class: "num" + (p.overdue > 0 ? " alarm" : "") }, fmtInt(p.overdue)),
    el("td", { class: "num" }, fmtSeconds(p.ack_latency_p50_seconds)),
    el("td", { class: "num" }, fmtSeconds(p.ack_latency_p95_seconds)),
    el("td", { class: "num" }, fmtPercent(p.rejection_rate)),
    el("td", {}, p.rejections_by_reason.slice(0, 3).map((r) => r.reason + " (" + fmtInt(r.count) + ")").join(", ") || t("none"))));
  fill(document.querySelector("#providers tbody"), rows);
}

function renderDeadLetters(snap) {
  const dl = snap.dead_letters;
  const note = document.getElementById("deadletters-note");
  note.hidden = dl.available;
  note.textContent = dl.available ? "" : t("not_read") + (dl.note ? ": " + dl.note : "");
  const rows = dl.by_reason.map((r) => el("tr", { "data-reason": r.reason },
    el("td", { class: "code" }, r.reason),
    el("td", {}, r.service),
    el("td", { class: "num", "data-value": r.count }, fmtInt(r.count)),
    el("td", {}, fmtTime(r.last_at))));
  fill(document.querySelector("#deadletters tbody"), rows);
}

function renderLag(snap) {
  const lag = snap.consumer_lag;
  const note = document.getElementById("lag-note");
  note.hidden = lag.available;
  note.textContent = lag.available ? "" : t("not_read") + (lag.note ? ": " + lag.note : "");
  const rows = lag.groups.map((g) => el("tr", { "data-group": g.group },
    el("td", {}, g.service),
    el("td", { class: "code" }, g.topic),
    el("td", { class: "num" + (g.lag > 0 ? " warn" : ""), "data-value": g.lag }, fmtInt(g.lag)),
    el("td", { class: "num" + (g.stalled_s != null ? " warn" : ""), "data-stalled": g.stalled_s ?? "" },
      g.stalled_s != null ? fmtDuration(g.stalled_s) : "")));
  fill(document.querySelector("#lag tbody"), rows);
}

function render(snap) {
  const now = Date.now();
  renderCrises(snap, now);
  renderFunnels(snap);
  renderAreas(snap);
  renderGrievances(snap);
  renderReferrals(snap);
  renderProviders(snap);
  renderDeadLetters(snap);
  renderLag(snap);
  const updated = document.getElementById("updated");
  updated.textContent = fmtTime(snap.generated_at);
  updated.setAttribute("datetime", snap.generated_at);
}

document.getElementById("lang").addEventListener("click", () => {
  lang = lang === "ar" ? "en" : "ar";
  const url = new URL(window.location.href);
  url.searchParams.set("lang", lang);
  window.history.replaceState(null, "", url);
  applyLanguage();
});

applyLanguage();

const events = new EventSource("/api/events");
events.addEventListener("open", () => setLive("live"));
events.addEventListener("error", () => setLive("reconnecting"));
events.addEventListener("snapshot", (e) => {
  last = JSON.parse(e.data);
  render(last);
  setLive("live");
  const body = document.body;
  body.setAttribute("data-updates", String(Number(body.getAttribute("data-updates")) + 1));
  body.setAttribute("data-seq", e.lastEventId);
});
