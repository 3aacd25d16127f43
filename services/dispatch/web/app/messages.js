// Every text the app shows, by language. Vietnamese first; to add a language, add a table with
// the same keys (a missing key falls back to Vietnamese) and its locale for numbers and times.
// "{name}" in a text is replaced by the value of that name.

export const MESSAGES = {
  vi: {
    locale: "vi-VN",
    title: "Giao – Tài xế",
    app_name: "Giao Tài xế",
    signed_in: "Đã đăng nhập",
    signed_in_as: "{name} · đã đăng nhập",
    signed_out: "Chưa đăng nhập",
    sign_out: "Đăng xuất",
    sign_in_help: "Mở đường link đăng nhập mà điều phối viên gửi cho bạn (qua Zalo hoặc tin nhắn) trên điện thoại này.",
    signed_in_notice: "Đăng nhập thành công. Bật “Nhận đơn” để bắt đầu ca.",
    signed_out_notice: "Bạn đã đăng xuất.",
    session_ended: "Phiên đăng nhập đã hết hạn hoặc bị thu hồi. Hãy mở lại đường link đăng nhập.",
    offline_banner: "Không có mạng. Các bước sẽ được gửi khi có mạng lại.",
    back_online: "Đã có mạng lại.",

    shift_off: "Đang nghỉ",
    shift_off_hint: "Bấm để bắt đầu nhận đơn",
    shift_on: "Đang nhận đơn",
    shift_on_hint: "Bấm để nghỉ",
    shift_starting: "Đang lấy vị trí…",
    shift_started: "Bạn đang nhận đơn. Đơn mới sẽ hiện ở đây.",
    shift_ended: "Bạn đã nghỉ. Đơn đang giao vẫn ở bên dưới.",
    need_location: "Cần quyền vị trí để nhận đơn. Hãy cho phép truy cập vị trí trong trình duyệt.",
    no_location: "Chưa lấy được vị trí. Hãy bật GPS rồi thử lại.",
    need_network: "Cần có mạng để làm việc này.",

    pending_steps: "Bước chờ gửi",
    pending_badge: "chờ gửi",
    offers_title: "Đơn mời",
    no_offers: "Chưa có đơn mời.",
    no_offers_off: "Bật “Nhận đơn” để nhận đơn mời.",
    jobs_title: "Đơn đang giao",
    no_jobs: "Không có đơn nào đang giao.",

    offer_new: "Có đơn mời mới!",
    countdown: "Còn {s} giây",
    offer_expired: "Đơn mời đã hết hạn.",
    pickup: "Lấy hàng",
    dropoff_area: "Giao đến",
    distance: "Quãng đường",
    fee: "Phí giao",
    cod: "Thu hộ",
    no_cod: "Không thu hộ",
    parcel: "Hàng",
    weight: "{kg} kg",
    accept: "Nhận đơn",
    decline: "Bỏ qua",
    accepted: "Đã nhận đơn. Đến điểm lấy hàng.",
    declined: "Đã bỏ qua đơn.",

    status_assigned: "Đến lấy hàng",
    status_picked_up: "Đang đi giao",
    status_delivered: "Đã giao",
    status_delivery_failed: "Giao không thành công – trả hàng cho shop",
    status_returned: "Đã trả hàng",
    recipient: "Người nhận",
    note: "Ghi chú",
    call_shop: "Gọi shop",
    call_recipient: "Gọi khách",
    open_map: "Bản đồ",
    open_maps_web: "Google Maps",
    picked_up_button: "Đã lấy hàng",
    delivery_code: "Mã giao hàng (6 số)",
    cod_collected: "Tiền đã thu (₫)",
    cod_to_collect: "Cần thu: {amount}",
    deliver_button: "Đã giao hàng",
    fail_reason: "Lý do giao không thành công",
    fail_button: "Giao không thành công",
    return_button: "Đã trả hàng cho shop",
    reason_recipient_unreachable: "Không liên lạc được người nhận",
    reason_address_not_found: "Không tìm thấy địa chỉ",
    reason_refused: "Người nhận từ chối nhận hàng",
    reason_other: "Lý do khác",

    step_sent_pickup: "Đã báo lấy hàng.",
    step_sent_deliver: "Đã giao hàng thành công.",
    step_sent_fail: "Đã báo giao không thành công.",
    step_sent_return: "Đã báo trả hàng cho shop.",
    step_queued: "Không có mạng: bước này đang chờ gửi và sẽ tự gửi khi có mạng.",

    bad_code_format: "Mã giao hàng gồm đúng 6 chữ số.",
    bad_cod_format: "Hãy nhập số tiền đã thu.",
    cod_must_equal: "Số tiền đã thu phải đúng {amount}.",
    wrong_code: "Sai mã giao hàng. Còn {n} lần thử.",
    wrong_code_locked: "Sai mã giao hàng quá nhiều lần: đơn tạm bị khoá. Bạn vẫn có thể báo giao không thành công.",
    too_many_attempts: "Nhập sai quá nhiều lần. Thử lại sau {min} phút.",
    offer_gone: "Đơn mời đã hết hạn hoặc đã có tài xế khác nhận.",
    step_conflict: "Đơn không còn ở bước này (có thể đã bị huỷ hoặc đã xử lý).",
    not_found: "Không tìm thấy đơn này.",
    invalid_input: "Thông tin chưa hợp lệ. Hãy kiểm tra lại.",
    rate_limited: "Bạn thao tác quá nhanh. Thử lại sau ít phút.",
    server_busy: "Máy chủ đang bận. Ứng dụng sẽ thử lại.",
    network_error: "Không kết nối được máy chủ. Ứng dụng sẽ thử lại khi có mạng.",
  },
};

export const FALLBACK = "vi";

function pickLanguage() {
  const chosen = globalThis.localStorage?.getItem("giao.lang");
  return chosen && MESSAGES[chosen] ? chosen : FALLBACK;
}

export const LANG = pickLanguage();
export const LOCALE = MESSAGES[LANG].locale;

export function t(key, params = {}) {
  const text = MESSAGES[LANG][key] ?? MESSAGES[FALLBACK][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}
