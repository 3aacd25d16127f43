// The courier app: sign-in from the link, the shift switch, offers and jobs in hand. What it
// shows comes from dispatch's courier API (pushed on shift through a stream of events, polled
// otherwise) with the steps still waiting in the outbox applied on top, so a step taken
// without network shows at once, marked "chờ gửi".
import { fillTexts, reconcile, say } from "/web/shared/ui.js";
import { alertNewOffer, unlockSound } from "./alert.js";
import { api, ApiError, NetworkError, serverNow } from "./api.js";
import { hideCashHeld, readCashHeld } from "./cash.js";
import { parseAmount, formatMoney } from "./format.js";
import { Tracker } from "./location.js";
import { t } from "./messages.js";
import * as outbox from "./outbox.js";
import { explain } from "./problems.js";
import * as session from "./session.js";
import { STEP_RESULT, StepSender } from "./steps.js";
import { JobStream } from "./stream.js";
import { jobCard, jobKey, offerCard, tickOffer } from "./view.js";

const POLL_ONLINE_MS = 2500; // on shift while the stream of offers is down
const POLL_PUSHED_MS = 30000; // on shift with the stream up: a slow poll only to reconcile
const POLL_OFFLINE_MS = 15000; // off shift: only the jobs in hand, which change only by the courier
const STEP_SETTLE_MS = 3000; // a push this soon after a step's answer may have left before the step
const ON_SHIFT = "giao.online";
const JOBS = "giao.jobs"; // the jobs in hand as last seen, to open the app without network

const $ = (id) => document.getElementById(id);

const state = {
  online: false, // read from the phone's storage once the link's token is taken (startSession)
  starting: false,
  flag: null, // the last status answer's: no new offers until operations clear it
  jobs: [],
  queued: [],
  adding: new Set(), // orders whose step is being put in the outbox: a second tap is not a second step
  unreachable: false, // the last request found no network although the browser thinks it has some
  seenOffers: new Set(),
  version: 0, // bumped by every step's answer and every push, so an older poll's answer is ignored
  steppedAt: -Infinity, // when the last step's answer changed a job (performance.now())
};

let tracker = null;
let sender = null;
let stream = null;
let pollTimer = null;
let tickTimer = null;

// --- what the courier sees -------------------------------------------------------------------

function showSession() {
  const signedIn = session.token() !== null;
  $("signed-out").hidden = signedIn;
  $("shift").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
  const name = session.courierName();
  $("login-status").textContent = !signedIn ? t("signed_out") : name ? t("signed_in_as", { name }) : t("signed_in");
}

function showNetwork() {
  $("offline-banner").hidden = navigator.onLine && !state.unreachable;
}

function showToggle() {
  const toggle = $("online-toggle");
  toggle.setAttribute("aria-checked", String(state.online));
  toggle.dataset.state = state.starting ? "starting" : state.online ? "on" : "off";
  toggle.disabled = state.starting;
  $("toggle-state").textContent = state.starting ? t("shift_starting") : t(state.online ? "shift_on" : "shift_off");
  const hint = !state.online ? "shift_off_hint" : state.flag ? "shift_flagged_hint" : "shift_on_hint";
  $("toggle-hint").textContent = state.starting ? "" : t(hint);
}

// The jobs in hand as the courier should see them: the server's, with queued steps applied.
function jobsInHand() {
  const jobs = new Map(state.jobs.filter((j) => j.status !== "offered").map((j) => [j.order_id, { ...j, pending: false }]));
  for (const step of state.queued) {
    const job = jobs.get(step.orderId);
    if (job) jobs.set(step.orderId, { ...job, status: STEP_RESULT[step.action], pending: true });
  }
  return [...jobs.values()].filter((j) => j.pending || !["delivered", "returned"].includes(j.status));
}

function offers() {
  const now = serverNow();
  return state.jobs.filter((j) => j.status === "offered" && Date.parse(j.offer_expires_at) > now);
}

function render() {
  showToggle();
  showNetwork();
  const open = offers();
  reconcile($("offers"), open, (j) => j.order_id, (j) => offerCard(j, { onAccept: accept, onDecline: decline }));
  $("no-offers").hidden = open.length > 0;
  $("no-offers").textContent = t(state.online ? "no_offers" : "no_offers_off");
  const jobs = jobsInHand();
  reconcile($("jobs"), jobs, jobKey, (j) => jobCard(j, { onStep: takeStep }));
  $("no-jobs").hidden = jobs.length > 0;
  $("pending-steps").textContent = String(state.queued.length);
  $("pending").hidden = state.queued.length === 0;
  tick();
}

// Counts the offers down; a lapsed one leaves the screen without waiting for the next poll.
function tick() {
  const now = serverNow();
  let lapsed = false;
  for (const card of $("offers").children) {
    const job = state.jobs.find((j) => j.order_id === card.dataset.orderId);
    if (!job || !tickOffer(card, job, now)) lapsed = true;
  }
  if (lapsed) {
    state.jobs = state.jobs.filter((j) => j.status !== "offered" || Date.parse(j.offer_expires_at) > now);
    render();
  }
}

// --- the server's answers -------------------------------------------------------------------

function setJobs(jobs) {
  if (session.token() === null) return; // an answer that came after the sign-out
  state.jobs = jobs;
  localStorage.setItem(JOBS, JSON.stringify(jobs.filter((j) => j.status !== "offered")));
  const fresh = offers().filter((j) => !state.seenOffers.has(j.order_id));
  for (const job of fresh) state.seenOffers.add(job.order_id);
  render();
  if (fresh.length > 0) {
    alertNewOffer();
    // Into view, its buttons too; not while the courier types a code in another card.
    if (!(document.activeElement instanceof HTMLInputElement)) {
      document.querySelector(`[data-testid=offer][data-order-id="${fresh[0].order_id}"]`)
        ?.scrollIntoView({ block: "nearest", behavior: "smooth" });
    }
  }
}

// A step's answer changed the jobs: newer than any poll still on its way.
function stepped() {
  state.version += 1;
  state.steppedAt = performance.now();
}

function updateJob(job) {
  stepped();
  setJobs(job ? [...state.jobs.filter((j) => j.order_id !== job.order_id), job] : state.jobs);
}

function reached(ok) {
  if (state.unreachable === !ok) return;
  state.unreachable = !ok;
  showNetwork();
}

function failed(error, action, job) {
  if (error instanceof ApiError && error.status === 401) return endSession(t("session_ended"));
  if (error instanceof NetworkError) reached(false);
  say(explain(error, action, job), "error");
}

// A `jobs` event of the stream: as a poll's answer, and newer than any poll still on its way;
// unless it may predate the courier's last step (on another connection): then a poll asks.
function pushed(items) {
  reached(true);
  if (performance.now() - state.steppedAt < STEP_SETTLE_MS) return poll();
  state.version += 1;
  setJobs(items);
}

function nextPollMs() {
  if (!state.online) return POLL_OFFLINE_MS;
  return stream?.live ? POLL_PUSHED_MS : POLL_ONLINE_MS;
}

function schedulePoll() {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(poll, nextPollMs());
}

async function poll() {
  clearTimeout(pollTimer);
  if (session.token() === null) return;
  if (navigator.onLine) {
    const version = state.version;
    try {
      const body = await api.jobs();
      reached(true);
      if (version === state.version) setJobs(body.items);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return endSession(t("session_ended"));
      if (error instanceof NetworkError) reached(false);
    }
  }
  schedulePoll();
}

// --- the courier's actions --------------------------------------------------------------------

async function accept(job) {
  unlockSound();
  try {
    updateJob(await api.step(job.order_id, "accept"));
    reached(true);
    say(t("accepted"));
  } catch (error) {
    // Only a 409 (expired, or taken by another courier) or a 404 says the offer is gone. Any
    // other failure (no network, a 5xx, the rate) leaves it as it is: the courier taps again,
    // and a poll at once shows what became of it (an accept whose answer was lost: the job).
    if (error instanceof ApiError && [401, 404, 409].includes(error.status)) {
      failed(error, "accept", job);
      if (error.status !== 401) forgetOffer(job);
      return;
    }
    if (error instanceof NetworkError) reached(false);
    say(t("accept_not_sent"), "error");
    poll();
  }
}

async function decline(job) {
  unlockSound();
  try {
    await api.step(job.order_id, "decline");
    reached(true);
    say(t("declined"));
    forgetOffer(job);
  } catch (error) {
    failed(error, "decline", job);
    if (error instanceof ApiError) forgetOffer(job);
  }
}

function forgetOffer(job) {
  stepped();
  setJobs(state.jobs.filter((j) => j.order_id !== job.order_id));
}

// pickup, deliver, fail, return: checked here, then through the outbox.
async function takeStep(job, action, input) {
  unlockSound();
  if (sender === null) return;
  // A double tap: the first tap's step is being kept or waits already.
  if (state.adding.has(job.order_id) || state.queued.some((s) => s.orderId === job.order_id)) return;
  let body = input;
  if (action === "deliver") {
    const cod = parseAmount(input.cod);
    if (!/^[0-9]{6}$/.test(input.code)) return say(t("bad_code_format"), "error");
    if (cod === null) return say(t("bad_cod_format"), "error");
    if (cod !== job.cod_amount_vnd) return say(t("cod_must_equal", { amount: formatMoney(job.cod_amount_vnd) }), "error");
    body = { delivery_code: input.code, cod_collected_vnd: cod };
  }
  state.adding.add(job.order_id);
  try {
    await sender.take(job.order_id, action, body);
  } finally {
    state.adding.delete(job.order_id);
  }
  if (state.queued.some((s) => s.orderId === job.order_id && s.action === action)) {
    say(t(navigator.onLine ? "step_waiting" : "step_queued")); // online: the server asked to wait
  }
}

async function toggleShift() {
  unlockSound();
  if (state.starting) return;
  if (!navigator.onLine) return say(t("need_network"), "error");
  if (state.online) return endShift();
  state.starting = true;
  showToggle();
  const phone = tracker;
  phone.start();
  try {
    const position = await phone.position();
    if (position === null) {
      phone.stop();
      return say(t("no_location"), "error");
    }
    const me = await api.status(true, position);
    if (session.token() === null) return; // signed out meanwhile
    session.rememberName(me.display_name);
    state.flag = me.flag ?? null;
    state.online = true;
    localStorage.setItem(ON_SHIFT, "1");
    showSession();
    say(t("shift_started"));
    stream?.open();
    poll();
  } catch (error) {
    phone.stop();
    failed(error, "status");
  } finally {
    state.starting = false;
    render();
  }
}

async function endShift() {
  try {
    await api.status(false);
  } catch (error) {
    return failed(error, "status");
  }
  tracker?.stop();
  stream?.close();
  state.online = false;
  localStorage.removeItem(ON_SHIFT);
  say(t("shift_ended"));
  stepped();
  setJobs(state.jobs.filter((j) => j.status !== "offered")); // going offline withdrew them
  poll();
}

// Back in the app during a shift (reloaded, or reopened): the position goes on.
async function resumeShift() {
  const phone = tracker;
  phone.start();
  const position = await phone.position();
  if (position === null || !navigator.onLine) return;
  try {
    const me = await api.status(true, position);
    if (session.token() === null) return; // signed out meanwhile
    session.rememberName(me.display_name);
    state.flag = me.flag ?? null;
    showSession();
    showToggle();
  } catch (error) {
    failed(error, "status");
  }
}

async function endSession(notice) {
  stream?.close();
  tracker?.dispose();
  sender?.dispose();
  clearTimeout(pollTimer);
  clearInterval(tickTimer);
  tracker = sender = stream = null;
  session.forget();
  // An answer still on its way (a poll, a step) is older than this: it is dropped.
  state.version += 1;
  Object.assign(state, { online: false, flag: null, jobs: [], queued: [], seenOffers: new Set() });
  await outbox.clear();
  for (const list of [$("offers"), $("jobs")]) list.replaceChildren();
  hideCashHeld($("cash-held"));
  showSession();
  say(notice, notice === t("session_ended") ? "error" : "notice");
}

// The courier's sign-out, unless steps still wait to be sent: they would be lost (a delivery,
// cash collected), so the courier is told to connect first.
async function signOut() {
  if (state.adding.size > 0 || (await outbox.steps()).length > 0) {
    sender?.send();
    return say(t("sign_out_steps_waiting"), "error");
  }
  if (state.online) api.status(false).catch(() => {}); // best effort: the server withdraws the offers
  endSession(t("signed_out_notice"));
}

function startSession() {
  state.online = localStorage.getItem(ON_SHIFT) === "1";
  state.jobs = JSON.parse(localStorage.getItem(JOBS) || "[]");
  showSession();
  tracker = new Tracker({
    onProblem: (kind) => say(t(kind === "denied" ? "need_location" : "no_location"), "error"),
    onUnauthorized: () => endSession(t("session_ended")),
  });
  sender = new StepSender({
    onChange: (queued) => { state.queued = queued; render(); },
    onSent: (step, job) => {
      reached(true);
      updateJob(job);
      say(t(`step_sent_${step.action}`));
      if (step.action === "deliver") readCashHeld($("cash-held"));  // the cash collected is held now
    },
    onRejected: (step, error) => { failed(error, step.action, state.jobs.find((j) => j.order_id === step.orderId)); poll(); },
    onUnauthorized: () => endSession(t("session_ended")),
  });
  stream = new JobStream({
    onJobs: pushed,
    onLive: (live) => { $("offers").dataset.push = live ? "live" : "off"; schedulePoll(); },
    onUnauthorized: () => endSession(t("session_ended")),
  });
  tickTimer = setInterval(tick, 1000);
  render();
  readCashHeld($("cash-held"));
  const steps = sender;
  steps.load().then(() => steps.send());
  if (state.online) {
    resumeShift();
    stream.open();
  }
  poll();
}

// --- the app's own updates -------------------------------------------------------------------

// The service worker (sw.js) keeps the app on the phone in whole versions. A new version waits
// beside the one in use until the app is closed; the courier may take it at once instead, at a
// moment of their choosing (a reload loses what is typed in, never a step: those are in the
// outbox).
async function keepShellCurrent() {
  const workers = navigator.serviceWorker;
  if (!workers) return;
  const kept = Boolean(await workers.getRegistration()); // false on the first visit only
  const registration = await workers.register("sw.js").catch(() => null);
  if (!registration) return; // no offline shell (refused, or workers blocked); the app works all the same
  // register() settles only after an install already under way has ended (the browser runs a
  // scope's jobs one at a time), so a version installed before this page asked is waiting here.
  const offer = () => { $("update-banner").hidden = !registration.waiting; };
  registration.addEventListener("updatefound", () => registration.installing?.addEventListener("statechange", offer));
  offer();
  $("app-update").addEventListener("click", () => registration.waiting?.postMessage("activate"));
  // A new version took over (this window's tap or another's): every window of the app reloads
  // into it, rather than run on with files the old version no longer keeps. Not when the first
  // version takes over the first visit's page, which it loaded itself.
  let first = !kept;
  workers.addEventListener("controllerchange", () => {
    if (first) first = false;
    else location.reload();
  });
  // An app kept open all day still hears of a new version when the courier comes back to it.
  document.addEventListener("visibilitychange", () => { if (!document.hidden) registration.update().catch(() => {}); });
}

// --- start ------------------------------------------------------------------------------------

async function main() {
  fillTexts(t);
  // Another courier's link while the phone still holds steps not sent (a delivery, cash
  // collected): taking it would lose them. The link waits; the courier is told to connect so
  // the steps go first, then to open the link again.
  const handedOver = session.token() !== null && ![null, "", session.token()].includes(session.tokenInLink());
  if (handedOver && (await outbox.steps()).length > 0) {
    session.dropLink();
    say(t("link_waits_for_steps"), "error");
  } else if (handedOver && localStorage.getItem(ON_SHIFT) === "1") {
    // The courier handing the phone over was on shift: off it (with their token, read now),
    // or dispatch would go on offering them orders nobody answers. Best effort.
    api.status(false).catch(() => {});
  }
  const link = session.takeTokenFromLink();
  if (link === "new") await outbox.clear(); // another courier's leftovers: none that were never sent
  if (link !== null) say(t("signed_in_notice"));
  // A sign-in link opened in a tab already on the app changes only the address's fragment: the
  // page starts again, and takes the link's token as above.
  window.addEventListener("hashchange", () => { if (session.tokenInLink() !== null) location.reload(); });
  $("online-toggle").addEventListener("click", toggleShift);
  $("sign-out").addEventListener("click", signOut);
  window.addEventListener("online", () => {
    state.unreachable = false;
    say(t("back_online"));
    showNetwork();
    sender?.send();
    stream?.renew();
    poll();
  });
  window.addEventListener("offline", () => {
    showNetwork();
    stream?.renew(); // the stream in hand is dead; a new one once the network is back
  });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });
  keepShellCurrent();
  if (session.token() === null) {
    showSession();
    showNetwork();
    return;
  }
  startSession();
}

main();
