// Every text the console shows, by language. Vietnamese first; another language is a table
// with the same keys (a missing key falls back to Vietnamese). "{name}" is replaced by the value.

export const MESSAGES = {
  vi: {
    locale: "vi-VN",
    app_name: "Giao – Điều phối",
    sign_in_title: "Đăng nhập quản trị",
    sign_in_help: "Nhập mã quản trị (admin token). Mã chỉ được giữ trong tab này và mất khi đóng tab.",
    token_label: "Mã quản trị",
    sign_in: "Đăng nhập",
    sign_out: "Đăng xuất",
    wrong_token: "Mã quản trị không đúng.",
    token_missing: "Hãy nhập mã quản trị.",
    session_ended: "Phiên đã hết hoặc mã không còn hiệu lực. Hãy đăng nhập lại.",
    network_error: "Không kết nối được máy chủ. Đang thử lại…",
    updated_at: "Cập nhật {time}",

    counter_waiting: "Đơn chờ tài xế",
    counter_oldest: "Chờ lâu nhất",
    counter_offers: "Lời mời đang chờ",
    counter_in_progress: "Đang giao",
    counter_expired: "Hết hạn hôm nay",
    counter_couriers: "Tài xế trực tuyến",
    counter_outbox: "Sự kiện chưa gửi",
    counter_dead_letters: "Thư chết (dead letters)",
    legend: "● tài xế (Đ xe đạp, M xe máy, Ô ô tô, T xe tải): xanh = rảnh, đỏ = đã đầy, viền cam = bị gắn cờ · ■ đơn: vàng = chờ, tím = đang mời, xanh = đã nhận, xám = đã lấy hàng",

    seconds: "{n} giây",
    minutes: "{n} phút",
    hours: "{n} giờ",
    days: "{n} ngày",
    none: "–",

    vehicle: { bicycle: "Xe đạp", motorbike: "Xe máy", car: "Ô tô", van: "Xe tải nhỏ" },
    vehicle_letter: { bicycle: "Đ", motorbike: "M", car: "Ô", van: "T" },  // on a courier's marker
    status: {
      waiting: "Chờ tài xế", offered: "Đang mời tài xế", assigned: "Tài xế đã nhận", picked_up: "Đã lấy hàng",
      delivered: "Đã giao", delivery_failed: "Giao không thành công", returned: "Đã trả hàng",
      cancelled: "Đã huỷ", expired: "Hết hạn",
    },
    offer_state: { open: "đang chờ trả lời", accepted: "đã nhận", declined: "đã từ chối", expired: "hết hạn", withdrawn: "đã rút lại" },

    courier_title: "{name} · {vehicle}",
    courier_load: "Đang giữ {load}/{capacity} đơn",
    courier_busy: "Đã đầy",
    courier_free: "Còn nhận được",
    courier_paused: "Tạm dừng nhận đơn mới (bị gắn cờ)",
    courier_jobs: "Đơn của tài xế",
    flag_title: "Tài xế bị gắn cờ",
    flag_reason: {
      impossible_speed: "Vị trí nhảy xa bất thường: liên tiếp nhiều vị trí mà không phương tiện nào đi kịp",
      code_guessing: "Nhập sai mã giao hàng quá nhiều lần ở nhiều đơn (không giao được đơn nào)",
    },
    flag_since: "Từ {time}",
    flag_effect: "Tài xế không nhận được đơn mới cho đến khi gỡ cờ. Hãy gọi cho tài xế trước khi gỡ.",
    flag_clear: "Gỡ cờ",
    courier_no_jobs: "Tài xế không giữ đơn nào.",
    cash_title: "Tiền thu hộ (COD) tài xế đang giữ",
    cash_held: "{amount} của {n} đơn đã giao",
    cash_none: "Không giữ tiền thu hộ nào.",
    cash_receive: "Nhận tiền nộp",
    cash_confirm: "Xác nhận đã nhận {amount}",
    cash_cancel: "Huỷ",
    cash_received: "Đã ghi nhận nộp {amount} của {n} đơn.",
    cash_changed: "Số tiền tài xế giữ vừa thay đổi (có đơn mới giao hoặc vừa nộp ở nơi khác), chưa ghi nhận gì. Hãy xem lại số tiền rồi nhận lại.",
    cash_list_open: "Tiền thu hộ tài xế đang giữ",
    cash_list_title: "Tài xế đang giữ tiền thu hộ (COD)",
    cash_list_total: "Tổng đang giữ: {amount}",
    cash_list_empty: "Không tài xế nào đang giữ tiền thu hộ.",
    cash_list_more: "Xem thêm",
    cash_held_since: "giữ từ {age} trước",
    cash_last_handin: "Lần nộp gần nhất: {amount} của {n} đơn, lúc {time}",
    order_title: "Đơn {id}",
    order_status: "Trạng thái: {status}",
    order_age: "Đặt cách đây {age}",
    chosen_courier: "Tài xế được chọn: {name}",
    no_courier: "Chưa có tài xế.",
    offers_title: "Các lần mời",
    no_offers: "Chưa mời ai.",
    offer_line: "{name} — {state}",
    offer_why: "Lý do: cách điểm lấy ~{distance} m, ~{minutes} phút; đang giữ {load}/{capacity}; so sánh {candidates} tài xế",
    choices_title: "{n} mục ở chỗ này: chọn một",
    close: "Đóng",
    zoom_in: "Phóng to",
    zoom_out: "Thu nhỏ",
    order_marker: "Đơn {status} · {age}",

    create_title: "Tạo tài xế mới",
    field_name: "Họ và tên",
    field_phone: "Số điện thoại",
    field_vehicle: "Phương tiện",
    create_submit: "Tạo tài xế",
    created_title: "Đã tạo tài xế {name}. Quét mã QR bằng điện thoại của tài xế để đăng nhập:",
    created_help: "Đường link chỉ hiện một lần: đừng gửi cho người khác.",
    create_failed: "Không tạo được tài xế: {detail}",

    open_failed: "Không mở được: {detail}",
    poll_failed: "Chưa cập nhật được: {detail}",
    invalid_fields: "kiểm tra lại {fields}",
    failed_network: "không kết nối được máy chủ.",
    failed_404: "không tìm thấy (có thể đã bị xoá hoặc đã xong).",
    failed_409: "thao tác không còn hợp lệ với trạng thái hiện tại.",
    failed_429: "thao tác quá nhanh, hãy thử lại sau ít giây.",
    failed_server: "máy chủ đang gặp sự cố, hãy thử lại sau.",
    failed_other: "yêu cầu không được chấp nhận.",
  },
};

const table = MESSAGES[(localStorage.getItem("giao.lang") || "vi")] || MESSAGES.vi;

export function t(key, values = {}) {
  const text = table[key] ?? MESSAGES.vi[key] ?? key;
  return typeof text === "string" ? text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? "")) : text;
}

export const LOCALE = t("locale");
