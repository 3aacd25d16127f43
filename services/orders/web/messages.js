// Every text the console shows, by language. Vietnamese first; to add a language, add a table
// with the same keys (a missing key falls back to Vietnamese) and its locale for numbers and
// times. "{name}" in a text is replaced by the value of that name.

export const MESSAGES = {
  vi: {
    locale: "vi-VN",
    title: "Giao – Cửa hàng",
    app_name: "Giao Cửa hàng",
    sign_in: "Đăng nhập",
    sign_out: "Đăng xuất",
    api_key: "Khóa API",
    sign_in_help: "Dán khóa API của cửa hàng (bắt đầu bằng gk_). Khóa chỉ được giữ trong thẻ trình duyệt này và mất khi bạn đóng thẻ.",
    signed_in: "Đăng nhập thành công.",
    signed_out: "Bạn đã đăng xuất.",
    wrong_key: "Khóa API không đúng hoặc đã bị thu hồi.",
    session_ended: "Khóa API không còn dùng được. Hãy đăng nhập lại.",

    tab_orders: "Đơn hàng",
    tab_new: "Tạo đơn",
    tab_webhooks: "Webhook",
    tab_keys: "Khóa API",
    back: "← Danh sách đơn",

    orders_title: "Đơn hàng của bạn",
    no_orders: "Chưa có đơn nào. Bấm “Tạo đơn” để gửi đơn đầu tiên.",
    status_placed: "Đang tìm tài xế",
    status_assigned: "Tài xế đang đến lấy",
    status_picked_up: "Đang giao",
    status_delivered: "Đã giao",
    status_delivery_failed: "Giao không thành công",
    status_returned: "Đã trả hàng về shop",
    status_cancelled: "Đã huỷ",
    status_expired: "Không tìm được tài xế",
    cancellation_requested: "Đang chờ huỷ",
    cancellation_refused: "Không huỷ được (đã lấy hàng)",

    new_title: "Tạo đơn giao hàng",
    pickup: "Lấy hàng",
    shop_name: "Tên cửa hàng",
    phone: "Số điện thoại",
    address: "Địa chỉ",
    recipient: "Người nhận",
    recipient_name: "Họ tên người nhận",
    points: "Vị trí trên bản đồ",
    pick_pickup: "Điểm lấy hàng",
    pick_dropoff: "Điểm giao",
    map_hint: "Chọn loại điểm rồi chạm vào bản đồ để đặt điểm.",
    no_point: "chưa chọn",
    parcel: "Hàng hoá",
    weight_kg: "Cân nặng (kg)",
    description: "Mô tả hàng",
    cod: "Tiền thu hộ (₫)",
    note: "Ghi chú cho tài xế",
    fee: "Phí giao",
    fee_needs: "Chọn hai điểm và nhập cân nặng để xem phí",
    quoting: "Đang tính phí…",
    fee_value: "{fee} · {km} · khoảng {min} phút",
    place_order: "Tạo đơn",
    placing: "Đang tạo đơn…",
    placed: "Đã tạo đơn. Gửi mã giao hàng cho người nhận.",
    missing_fields: "Hãy điền đủ: {fields}.",
    bad_weight: "Cân nặng từ 0,001 đến 50 kg.",

    delivery_code: "Mã giao hàng",
    delivery_code_help: "Người nhận đọc mã này cho tài xế khi nhận hàng.",
    tracking_code: "Mã vận đơn",
    tracking_link: "Link theo dõi",
    share: "Chia sẻ link theo dõi",
    shared: "Đã chia sẻ link theo dõi.",
    copied: "Đã sao chép link theo dõi.",
    share_failed: "Không chia sẻ được. Hãy sao chép link ở trên.",
    share_text: "Theo dõi đơn hàng của bạn. Mã giao hàng: {code}",
    status: "Trạng thái",
    courier: "Tài xế",
    cod_short: "Thu hộ",
    no_cod: "Không thu hộ",
    created: "Tạo lúc",
    history: "Hành trình",
    cancel: "Huỷ đơn",
    cancel_confirm: "Huỷ đơn này?",
    cancel_sent: "Đã gửi yêu cầu huỷ đơn.",
    cancel_refused: "Không huỷ được: tài xế đã lấy hàng hoặc đơn đã kết thúc.",

    webhooks_title: "Webhook",
    webhooks_help: "Giao gửi trạng thái đơn đến địa chỉ của bạn, có chữ ký theo chuẩn Standard Webhooks.",
    webhook_url: "Địa chỉ nhận (URL)",
    webhook_add: "Thêm webhook",
    webhook_added: "Đã thêm webhook.",
    secret_once: "Khóa ký (chỉ hiện một lần, hãy lưu lại):",
    no_webhooks: "Chưa có webhook nào.",
    enabled: "Đang bật",
    disabled: "Đã tắt",
    log: "Nhật ký gửi",
    ping: "Gửi thử",
    pinged: "Đã xếp hàng một lần gửi thử.",
    remove: "Xoá",
    removed: "Đã xoá webhook.",
    no_deliveries: "Chưa có lần gửi nào.",
    state_pending: "Đang chờ",
    state_delivered: "Đã gửi",
    state_failed: "Thất bại",
    attempts: "{n} lần thử",
    event_order_status_changed: "Đổi trạng thái",
    event_order_cancellation_answered: "Trả lời yêu cầu huỷ",
    event_order_delivery_failed: "Giao không thành công",
    event_order_returned: "Trả hàng",
    event_ping: "Gửi thử",

    keys_title: "Khóa API",
    keys_help: "Tạo khóa mới để thay khóa cũ, rồi thu hồi khóa cũ. Không thu hồi được khóa cuối cùng.",
    key_create: "Tạo khóa mới",
    key_once: "Khóa mới (chỉ hiện một lần, hãy lưu lại):",
    key_created: "Đã tạo khóa mới.",
    revoke: "Thu hồi",
    revoke_confirm: "Thu hồi khóa này? Các ứng dụng đang dùng nó sẽ không gọi được nữa.",
    revoked: "Đã thu hồi khóa.",
    last_key: "Không thể thu hồi khóa cuối cùng.",
    key_no_prefix: "khóa đầu tiên",

    invalid_input: "Thông tin chưa hợp lệ: {fields}.",
    unsafe_url: "Địa chỉ webhook không dùng được: cần https:// và không được trỏ vào mạng nội bộ.",
    not_found: "Không tìm thấy.",
    conflict: "Yêu cầu bị từ chối: {detail}",
    server_busy: "Máy chủ đang bận. Hãy thử lại.",
    network_error: "Không kết nối được máy chủ. Hãy kiểm tra mạng rồi thử lại.",
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
