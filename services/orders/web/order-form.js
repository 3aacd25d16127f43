// The form that quotes and places an order. The two points are picked on the shared base map
// (a tap sets the chosen one). The fee is quoted as soon as both points and a weight are there;
// placing sends an Idempotency-Key made once per form content, so a double tap or a retry after
// a lost answer places one order.
import { api } from "./api.js";
import { formatDistance, formatMoney, formatPoint, parseAmount, parseKg } from "./format.js";
import { t } from "./messages.js";

const PICKUP = "giao.merchant.pickup"; // the shop's own details, not secret: remembered across visits
const QUOTE_DELAY_MS = 400;

export class OrderForm {
  constructor(form, { onPlaced, onError, say }) {
    this.form = form;
    this.onPlaced = onPlaced;
    this.onError = onError;
    this.say = say;
    this.points = { pickup: null, dropoff: null };
    this.markers = { pickup: null, dropoff: null };
    this.picking = "pickup";
    this.map = null;
    this.idempotencyKey = crypto.randomUUID();
    this.quoteTimer = null;
    this.quoteSeq = 0;
    this.placing = false;
    this.restorePickup();
    for (const button of form.querySelectorAll("[data-point]")) {
      button.addEventListener("click", () => this.choose(button.dataset.point));
    }
    form.addEventListener("input", () => this.changed());
    form.elements.cod.addEventListener("input", () => {
      const cod = form.elements.cod;
      const amount = parseAmount(cod.value);
      cod.value = amount === null ? "" : amount.toLocaleString("vi-VN");
    });
    form.addEventListener("submit", (event) => { event.preventDefault(); this.place(); });
    this.choose(this.points.pickup ? "dropoff" : "pickup");
    this.showPoints();
    this.showFee(t("fee_needs"), "");
  }

  // The map is made when the form is first shown: Leaflet measures its element.
  async shown() {
    if (this.map) return this.map.invalidateSize();
    const { createMap, markerAt } = await import("/web/shared/map.js");
    this.markerAt = markerAt;
    const start = this.points.pickup;
    const view = start ? { center: [start.lat, start.lng], zoom: 14 } : {};
    this.map = createMap(this.form.querySelector("#map"), { ...view, zoomTexts: { zoomIn: t("zoom_in"), zoomOut: t("zoom_out") } });
    this.map.on("click", (event) => this.setPoint(this.picking, { lat: event.latlng.lat, lng: event.latlng.lng }));
    for (const which of ["pickup", "dropoff"]) this.drawPoint(which);
    this.keepWithin(this.bounds);
  }

  // The map stays within the service area's bounds ([[south, west], [north, east]], from the
  // console's config): orders outside it are refused anyway (422).
  keepWithin(bounds) {
    this.bounds = bounds;
    if (!this.map || !bounds) return;
    this.map.setMaxBounds(bounds);
    this.map.options.maxBoundsViscosity = 1;
  }

  choose(which) {
    this.picking = which;
    for (const button of this.form.querySelectorAll("[data-point]")) {
      button.setAttribute("aria-checked", String(button.dataset.point === which));
    }
  }

  setPoint(which, point) {
    this.points[which] = { lat: Number(point.lat.toFixed(6)), lng: Number(point.lng.toFixed(6)) };
    this.drawPoint(which);
    this.showPoints();
    if (which === "pickup" && !this.points.dropoff) this.choose("dropoff");
    this.changed();
  }

  drawPoint(which) {
    const point = this.points[which];
    if (!this.map || !point) return;
    this.markers[which]?.remove();
    this.markers[which] = this.markerAt([point.lat, point.lng], {
      className: which === "pickup" ? "shop" : "recipient", title: t(which === "pickup" ? "pick_pickup" : "pick_dropoff"),
      data: { testid: `${which}-marker` }, interactive: false, // a tap there goes to the map, which moves the point
    }).addTo(this.map);
  }

  showPoints() {
    for (const which of ["pickup", "dropoff"]) {
      const point = this.points[which];
      this.form.querySelector(`#${which}-point`).textContent = point ? formatPoint(point) : t("no_point");
    }
  }

  showFee(text, state) {
    const fee = this.form.querySelector("#quote-fee");
    fee.textContent = text;
    fee.dataset.state = state;
  }

  // Any change makes a new order: a new Idempotency-Key, a new quote.
  changed() {
    this.idempotencyKey = crypto.randomUUID();
    this.quoteSeq += 1; // a quote under way is of the form as it was: its answer is dropped
    clearTimeout(this.quoteTimer);
    this.quoteTimer = setTimeout(() => this.quote(), QUOTE_DELAY_MS);
  }

  async quote() {
    const grams = parseKg(this.form.elements.weight.value);
    const { pickup, dropoff } = this.points;
    if (!pickup || !dropoff || grams === null) return this.showFee(t("fee_needs"), "");
    const seq = ++this.quoteSeq;
    this.showFee(t("quoting"), "quoting");
    try {
      const q = await api.quote({ pickup, dropoff, parcel: { weight_grams: grams } });
      if (seq !== this.quoteSeq) return;
      this.showFee(t("fee_value", { fee: formatMoney(q.fee_vnd), km: formatDistance(q.distance_m), min: q.eta_minutes }),
        "quoted");
    } catch (error) {
      if (seq !== this.quoteSeq) return;
      this.showFee(t("fee_needs"), "");
      this.onError(error);
    }
  }

  // The body, or null after saying what is missing.
  body() {
    const f = this.form.elements;
    const missing = [
      ["pickup_name", "shop_name"], ["pickup_phone", "phone"], ["pickup_address", "address"],
      ["dropoff_name", "recipient_name"], ["dropoff_phone", "phone"], ["dropoff_address", "address"],
    ].filter(([name]) => f[name].value.trim() === "").map(([, label]) => t(label));
    if (!this.points.pickup) missing.push(t("pick_pickup"));
    if (!this.points.dropoff) missing.push(t("pick_dropoff"));
    if (missing.length > 0) {
      this.say(t("missing_fields", { fields: [...new Set(missing)].join(", ") }), "error");
      return null;
    }
    const grams = parseKg(f.weight.value);
    if (grams === null || grams > 50_000) {
      this.say(t("bad_weight"), "error");
      return null;
    }
    const description = f.description.value.trim();
    const note = f.note.value.trim();
    return {
      pickup: { name: f.pickup_name.value.trim(), phone: f.pickup_phone.value.trim(), address: f.pickup_address.value.trim(),
                ...this.points.pickup },
      dropoff: { name: f.dropoff_name.value.trim(), phone: f.dropoff_phone.value.trim(),
                 address: f.dropoff_address.value.trim(), ...this.points.dropoff },
      parcel: { weight_grams: grams, ...(description ? { description } : {}) },
      cod_amount_vnd: parseAmount(f.cod.value) ?? 0,
      ...(note ? { note } : {}),
    };
  }

  async place() {
    if (this.placing) return; // a second tap while the first is on its way
    const body = this.body();
    if (body === null) return;
    const submit = this.form.querySelector("[type=submit]");
    this.placing = true;
    submit.disabled = true;
    submit.textContent = t("placing");
    try {
      const order = await api.place(body, this.idempotencyKey);
      this.rememberPickup(body.pickup);
      this.clearRecipient();
      this.onPlaced(order);
    } catch (error) {
      this.onError(error); // the same content retried keeps its key: no second order
    } finally {
      this.placing = false;
      submit.disabled = false;
      submit.textContent = t("place_order");
    }
  }

  clearRecipient() {
    const f = this.form.elements;
    for (const name of ["dropoff_name", "dropoff_phone", "dropoff_address", "description", "note"]) f[name].value = "";
    f.cod.value = "0";
    this.points.dropoff = null;
    this.markers.dropoff?.remove();
    this.markers.dropoff = null;
    this.choose("dropoff");
    this.showPoints();
    this.changed();
  }

  rememberPickup(pickup) {
    localStorage.setItem(PICKUP, JSON.stringify(pickup));
  }

  restorePickup() {
    let pickup = null;
    try {
      pickup = JSON.parse(localStorage.getItem(PICKUP) || "null");
    } catch {
      return;
    }
    if (!pickup) return;
    const f = this.form.elements;
    f.pickup_name.value = pickup.name ?? "";
    f.pickup_phone.value = pickup.phone ?? "";
    f.pickup_address.value = pickup.address ?? "";
    if (Number.isFinite(pickup.lat) && Number.isFinite(pickup.lng)) this.points.pickup = { lat: pickup.lat, lng: pickup.lng };
  }
}
